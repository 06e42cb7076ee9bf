// Several real edge processes serving one disk folder with a tiny budget, with concurrent writers, readers
// and evictions for a bounded time: every "present" answer (HEAD 200) is followed by a successful read, or
// by an eviction of that blob that some process logged after the question was asked; no upload fails; and
// the folder stays within the one budget plus the stated slack (uploads in flight).
import { readdirSync, statSync, watch } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob, request } from '../helpers/http.ts';
import { WHOLE_BODY_MAX } from '../../edge/bodies.ts';

const RUN_MS = 3000;
const CLIENTS = 8;
const BUDGET = 1024 * 1024;
const MAX_BLOB = 128 * 1024;
/** What the folder may hold past the budget: every client's upload in flight, and one more per process. */
const slack = (processes: number) => (CLIENTS + processes) * MAX_BLOB;

/** Bytes of the files under a folder (blobs and uploads in flight; the ledger is bookkeeping, not data). */
function folderBytes(path: string): number {
  let total = 0;
  for (const entry of readdirSync(path, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    total += statSync(join(entry.parentPath, entry.name), { throwIfNoEntry: false })?.size ?? 0;
  }
  return total;
}

/** Evictions each edge logged (`disk: evicted blob=…`), as hash → times (ms since the epoch). */
function evictions(edges: EdgeProcess[]): Map<string, number[]> {
  const seen = new Map<string, number[]>();
  for (const edge of edges) {
    for (const match of edge.output().matchAll(/^(\S+) DEBUG disk: evicted blob=\S*\/([0-9a-f]{64})$/gm)) {
      seen.set(match[2]!, [...(seen.get(match[2]!) ?? []), Date.parse(match[1]!)]);
    }
  }
  return seen;
}

describe.each([2, 4])('%i edge processes on one disk folder (1 MiB budget)', (count) => {
  const dir = tempDir('larder-shared-folder-');
  const edges: EdgeProcess[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  afterAll(async () => {
    agent.destroy();
    await Promise.all(edges.map((e) => e.stop()));
    dir.remove();
  });

  it('never answers "present" for a blob it cannot serve, never fails an upload, and keeps one budget', async () => {
    for (let i = 0; i < count; i++) {
      edges.push(
        await startEdgeProcess({
          runtime: 'node',
          args: ['--store', `disk:${dir.path}`, '--max-size', String(BUDGET), '--log-level', 'debug'],
        }),
      );
    }
    const stored: Array<{ hash: string; size: number }> = [];
    const failures: string[] = [];
    const checks: Array<{ hash: string; askedAt: number }> = [];
    let heads = 0;
    let reads = 0;
    const pick = <T>(list: T[]) => list[Math.floor(Math.random() * list.length)]!;
    // Sampling the folder's size is measurement only; nothing waits on it.
    let largest = 0;
    const sampler = setInterval(() => {
      largest = Math.max(largest, folderBytes(join(dir.path, 'blobs')) + folderBytes(join(dir.path, 'tmp')));
    }, 50);
    const deadline = Date.now() + RUN_MS;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (Date.now() < deadline) {
          if (stored.length < 4 || Math.random() < 0.4) {
            const { data, hash } = randomBlob(16_384 + Math.floor(Math.random() * (MAX_BLOB - 16_384)));
            const put = await request(agent, `${pick(edges).url}/cas/${hash}`, 'PUT', data);
            if (put.status !== 200) failures.push(`PUT ${put.status}: ${put.body.toString()}`);
            else stored.push({ hash, size: data.length });
            continue;
          }
          const { hash, size } = pick(stored);
          const askedAt = Date.now();
          const head = await request(agent, `${pick(edges).url}/cas/${hash}`, 'HEAD');
          heads++;
          if (head.status !== 200) continue;
          const get = await request(agent, `${pick(edges).url}/cas/${hash}`, 'GET');
          if (get.status === 200) {
            reads++;
            if (get.body.length !== size) failures.push(`GET ${hash}: ${get.body.length} bytes of ${size}`);
          } else if (get.status === 404) {
            checks.push({ hash, askedAt });
          } else {
            failures.push(`GET ${get.status}: ${get.body.toString()}`);
          }
        }
      }),
    );
    clearInterval(sampler);
    expect(failures).toEqual([]);
    // Every "present, then gone" must be explained by an eviction logged after the question. A last upload
    // to each edge, once its own log line is in, means every earlier line is in too (one ordered stream).
    for (const edge of edges) {
      const { data, hash } = randomBlob(100);
      expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
      await edge.waitForOutput(hash);
    }
    const evicted = evictions(edges);
    const unexplained = checks.filter(
      ({ hash, askedAt }) => !(evicted.get(hash) ?? []).some((at) => at >= askedAt - 1),
    );
    expect(unexplained).toEqual([]);
    console.log(
      `${count} edges: ${stored.length} uploads, ${heads} HEADs, ${reads} reads after a HEAD hit, ${checks.length} hits evicted before the read (all logged); ` +
        `folder at most ${(largest / 1024).toFixed(0)} KiB (budget ${BUDGET / 1024} KiB + slack ${slack(count) / 1024} KiB)`,
    );
    expect(largest).toBeLessThanOrEqual(BUDGET + slack(count));
  }, 60_000);
});

describe('a process killed with uploads in flight', () => {
  const dir = tempDir('larder-killed-');
  afterAll(() => dir.remove());

  it('leaves nothing behind once the next process starts on the folder', async () => {
    const first = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${dir.path}`] });
    const own = readdirSync(join(dir.path, 'tmp')).find((name) => name.startsWith(`p${first.pid}-`))!;
    // An upload that stops half way: its temp file is created as soon as the body starts to arrive (for a blob
    // streamed to disk: smaller ones are gathered in memory first, edge/bodies.ts).
    const created = new Promise<void>((resolve) => {
      const watcher = watch(join(dir.path, 'tmp', own), () => {
        watcher.close();
        resolve();
      });
    });
    const { data, hash } = randomBlob(WHOLE_BODY_MAX + 400_000);
    const req = http.request(`${first.url}/cas/${hash}`, { method: 'PUT', headers: { 'content-length': data.length } });
    req.on('error', () => {}); // the server is about to die
    req.write(data.subarray(0, 200_000));
    await created;
    await first.kill9();

    const second = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${dir.path}`] });
    try {
      expect(readdirSync(join(dir.path, 'tmp')).filter((name) => !name.startsWith(`p${second.pid}-`))).toEqual([]);
      expect(readdirSync(join(dir.path, 'ledger')).filter((name) => name.startsWith(`p${first.pid}-`))).toEqual([]);
    } finally {
      req.destroy();
      await second.stop();
    }
  }, 30_000);
});
