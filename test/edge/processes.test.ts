// `larder edge --processes N` on every runtime (Node's cluster; Bun's and Deno's reusePort children): several child
// processes serve one port and one disk folder; the primary's PID stops them all, a child that dies is replaced,
// and a primary that dies leaves no child serving.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type EdgeProcess, edgeRuntimes, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob, request, sha256 } from '../helpers/http.ts';
import { REPO_ROOT } from '../helpers/tools.ts';

/** The children's PIDs: those of the primary's listening line, then each replacement's. */
function childPids(edge: EdgeProcess): number[] {
  const match = /listening on \S+ \(\d+ processes: ([\d, ]+)\)/.exec(edge.output());
  const first = match === null ? [] : match[1]!.split(', ').map(Number);
  const replacements = [...edge.output().matchAll(/process (\d+) serves in its place/g)].map((m) => Number(m[1]));
  return [...first, ...replacements];
}

/** Running (a zombie, dead but not yet reaped, does not count). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Waits (bounded) until none of `pids` runs; true if they all went. */
async function allGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

describe.each(edgeRuntimes())('larder edge --processes 2 on one disk folder, on %s', (runtime) => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  async function start(): Promise<{ edge: EdgeProcess; folder: string }> {
    const dir = tempDir('larder-processes-');
    const edge = await startEdgeProcess({ runtime, args: ['--store', `disk:${dir.path}`, '--processes', '2'] });
    cleanups.push(async () => {
      await edge.kill9();
      await allGone(childPids(edge), 10_000);
      dir.remove();
    });
    return { edge, folder: dir.path };
  }

  it("serves one port from two child processes that see each other's blobs, and stops them all with the primary", async () => {
    const { edge, folder } = await start();
    const children = childPids(edge);
    expect(children).toHaveLength(2);
    expect(children.filter((pid) => !alive(pid))).toEqual([]);
    // A fresh connection per request: the primary hands connections to the children in turn, so both serve, and
    // a blob stored through one is read through the other.
    const fresh = () => new http.Agent({ keepAlive: false });
    const blobs = Array.from({ length: 12 }, (_, i) => randomBlob(i % 2 === 0 ? 3000 : 200_000));
    for (const { data, hash } of blobs)
      expect((await request(fresh(), `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
    for (const { data, hash } of blobs) {
      expect((await request(fresh(), `${edge.url}/cas/${hash}`, 'HEAD')).headers['content-length']).toBe(
        String(data.length),
      );
      const got = await request(fresh(), `${edge.url}/cas/${hash}`, 'GET');
      expect([got.status, sha256(got.body)]).toEqual([200, hash]);
    }
    // Each child keeps its own ledger of what it published (disk-ledger.ts): both have stored some of the blobs.
    const published = (pid: number) =>
      readdirSync(join(folder, 'ledger'))
        .filter((name) => name.startsWith(`p${pid}-`))
        .reduce((n, name) => n + (readFileSync(join(folder, 'ledger', name), 'utf8').match(/^\+ /gm)?.length ?? 0), 0);
    expect(children.filter((pid) => published(pid) === 0)).toEqual([]);

    await edge.stop();
    // The primary exits only after its children have.
    expect(children.filter(alive)).toEqual([]);
  });

  it('replaces a child that dies, and the new one serves the same port and folder', async () => {
    const { edge } = await start();
    const [victim, survivor] = childPids(edge) as [number, number];
    const { data, hash } = randomBlob(5000);
    expect((await request(new http.Agent(), `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
    process.kill(victim, 'SIGKILL');
    await edge.waitForOutput(`process ${victim} exited (SIGKILL); starting another`);
    // The replacement is the primary's third child; waited for, so the clean-up stops it too.
    await edge.waitForOutput('serves in its place');
    const replacement = childPids(edge)[2]!;
    expect(await allGone([victim], 10_000)).toBe(true);
    expect(alive(replacement)).toBe(true);
    const got = await Promise.all(
      Array.from({ length: 8 }, () => request(new http.Agent({ keepAlive: false }), `${edge.url}/cas/${hash}`, 'GET')),
    );
    expect(got.map((r) => [r.status, sha256(r.body)])).toEqual(got.map(() => [200, hash]));
    expect(alive(survivor)).toBe(true);
  });

  it('leaves no child serving when the primary is killed', async () => {
    const { edge } = await start();
    const children = childPids(edge);
    expect(children).toHaveLength(2);
    await edge.kill9();
    expect(await allGone(children, 10_000), `still running: ${children.filter(alive)}`).toBe(true);
  });
});

it('refuses more than one process on a memory store', () => {
  const run = spawnSync(
    process.execPath,
    [join(REPO_ROOT, 'bin/larder.js'), 'edge', '--store', 'memory', '--processes', '2', '--listen', '127.0.0.1:0'],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  expect(run.status).toBe(2);
  expect(run.stderr).toMatch(/--processes above 1 needs a store the processes can share/);
});
