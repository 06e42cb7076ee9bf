// Faults a long-running edge meets, against a real `larder edge` process over real sockets and a real disk:
// instance names at the limits of validation, error answers that never reveal a server path, slow and
// stalled uploads, running out of file descriptors, and a full disk.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob, request } from '../helpers/http.ts';
import { findTool, requireTool, requireUnshare } from '../helpers/tools.ts';
import { bytesOf } from '../helpers/bytes.ts';

const havePrlimit = requireTool('prlimit', findTool('prlimit'), 'apt-get install util-linux');
const haveUnshare = requireUnshare();

/** A PUT whose body is written in `pieces` parts `gapMs` apart, then (unless `stallAfter`) finished. */
function slowUpload(
  url: string,
  data: Buffer,
  pieces: number,
  gapMs: number,
  stallAfter?: number,
): Promise<{ status?: number; error?: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = http.request(
      url,
      { method: 'PUT', headers: { 'content-length': data.length }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, ms: Date.now() - started }));
      },
    );
    req.on('error', (err) =>
      resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message, ms: Date.now() - started }),
    );
    const size = Math.ceil(data.length / pieces);
    let i = 0;
    const next = () => {
      if (stallAfter !== undefined && i === stallAfter) return; // the client goes quiet, connection open
      req.write(data.subarray(i * size, (i + 1) * size));
      if (++i < pieces)
        setTimeout(next, gapMs); // pacing a slow client, not waiting for the server
      else req.end();
    };
    next();
  });
}

describe('edge on a disk store: names and error bodies', () => {
  const dir = tempDir('larder-edge-faults-');
  const store = join(dir.path, 'store');
  let edge: EdgeProcess;
  const agent = new http.Agent({ keepAlive: true });

  beforeAll(async () => {
    edge = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${store}`] });
  });
  afterAll(async () => {
    agent.destroy();
    await edge?.stop();
    dir.remove();
  });

  it.each([
    ['254 characters', 'x'.repeat(254)],
    ['128 segments', Array.from({ length: 128 }, () => 'a').join('/')],
    [
      'the longest valid name of many short segments',
      Array.from({ length: 64 }, (_, i) => `s${i % 10}-`)
        .join('/')
        .slice(0, 256)
        .replace(/\/$/, ''),
    ],
  ])('stores and serves under an instance name of %s', async (_, instance) => {
    const { data, hash } = randomBlob(5000);
    const put = await request(agent, `${edge.url}/${instance}/cas/${hash}`, 'PUT', data);
    expect(put.status, put.body.toString()).toBe(200);
    const got = await request(agent, `${edge.url}/${instance}/cas/${hash}`, 'GET');
    expect(got.status).toBe(200);
    expect(bytesOf(got.body)).toEqual(bytesOf(data));
    // Other instances stay apart, even when the long names share a prefix.
    expect((await request(agent, `${edge.url}/${instance.slice(0, -1)}z/cas/${hash}`, 'GET')).status).toBe(404);
  });

  it.each(['blobs', 'tmp'])('never puts a server path in an error body when %s/ breaks', async (folder) => {
    const { data, hash } = randomBlob(100_000);
    expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
    // The folder is no longer a folder, so lookups (blobs/) or uploads (tmp/) fail inside the store.
    const broken = join(store, folder);
    rmSync(broken, { recursive: true, force: true });
    writeFileSync(broken, 'not a folder');
    try {
      const other = randomBlob(100_000);
      const answers =
        folder === 'blobs'
          ? [await request(agent, `${edge.url}/cas/${hash}`, 'GET')]
          : [await request(agent, `${edge.url}/cas/${other.hash}`, 'PUT', other.data)];
      for (const res of answers) {
        expect(res.status).toBe(500);
        expect(res.body.toString()).not.toContain(dir.path);
        expect(res.body.toString()).not.toMatch(/\/(tmp|home|var|work)\//);
      }
      // The operator still learns what failed, from the log.
      await edge.waitForOutput(broken);
    } finally {
      rmSync(broken, { force: true });
      mkdirSync(broken);
    }
  });
});

describe('edge with --idle-timeout: uploads without an overall deadline', () => {
  const dir = tempDir('larder-edge-idle-');
  let edge: EdgeProcess;
  beforeAll(async () => {
    edge = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${dir.path}`, '--idle-timeout', '1s'] });
  });
  afterAll(async () => {
    await edge?.stop();
    dir.remove();
  });

  it('accepts an upload that takes several idle timeouts but never pauses for one', async () => {
    const { data, hash } = randomBlob(400_000);
    const result = await slowUpload(`${edge.url}/cas/${hash}`, data, 20, 200);
    expect(result.status).toBe(200);
    expect(result.ms).toBeGreaterThan(3000);
    expect((await fetch(`${edge.url}/cas/${hash}`, { method: 'HEAD' })).status).toBe(200);
  }, 30_000);

  it('cuts off an upload that stops sending, after about the idle timeout, and stores nothing', async () => {
    const { data, hash } = randomBlob(400_000);
    const result = await slowUpload(`${edge.url}/cas/${hash}`, data, 20, 50, 5);
    expect(result.status ?? result.error).not.toBe(200);
    expect(result.ms).toBeLessThan(5000);
    expect((await fetch(`${edge.url}/cas/${hash}`, { method: 'HEAD' })).status).toBe(404);
  }, 30_000);
});

/** `clients` GETs at once, each left unread until every one has its status (so each holds a connection and a file). */
async function heldDownloads(url: string, clients: number): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  const responses: http.IncomingMessage[] = [];
  await Promise.all(
    Array.from(
      { length: clients },
      () =>
        new Promise<void>((resolve) => {
          const req = http.get(url, { agent: false }, (res) => {
            responses.push(res);
            const key = String(res.statusCode);
            outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
            resolve();
          });
          req.on('error', (err: NodeJS.ErrnoException) => {
            const key = err.code ?? err.message;
            outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
            resolve();
          });
        }),
    ),
  );
  await Promise.all(
    responses.map(
      (res) => new Promise((resolve) => res.on('end', resolve).on('error', resolve).on('close', resolve).resume()),
    ),
  );
  return outcomes;
}

describe.runIf(havePrlimit)('edge out of file descriptors (prlimit --nofile=160)', () => {
  const dir = tempDir('larder-edge-fds-');
  const { data, hash } = randomBlob(1024 * 1024);
  afterAll(() => dir.remove());

  const run = async (maxConnections: string) => {
    const edge = await startEdgeProcess({
      runtime: 'node',
      args: ['--store', `disk:${join(dir.path, maxConnections)}`, '--max-connections', maxConnections],
      wrapper: ['prlimit', '--nofile=160:160'],
    });
    try {
      expect((await fetch(`${edge.url}/cas/${hash}`, { method: 'PUT', body: data })).status).toBe(200);
      const outcomes = await heldDownloads(`${edge.url}/cas/${hash}`, 300);
      console.log(
        `--max-connections ${maxConnections}, 300 held downloads under 160 descriptors: ${JSON.stringify([...outcomes])}`,
      );
      // The edge is still serving afterwards.
      expect((await fetch(`${edge.url}/cas/${hash}`)).status).toBe(200);
      return outcomes;
    } finally {
      await edge.stop();
    }
  };

  it('answers EMFILE inside the store with 503 (retryable), never 500', async () => {
    // Without a cap, which requests get a descriptor is luck: what matters is that none hears 500.
    const outcomes = await run('10000');
    expect(outcomes.get('500'), JSON.stringify([...outcomes])).toBeUndefined();
    expect((outcomes.get('503') ?? 0) + (outcomes.get('200') ?? 0)).toBeGreaterThan(0);
  }, 60_000);

  it('with --max-connections auto, refuses connections past the cap rather than running out', async () => {
    const outcomes = await run('auto');
    expect(outcomes.get('500'), JSON.stringify([...outcomes])).toBeUndefined();
    expect(outcomes.get('503'), JSON.stringify([...outcomes])).toBeUndefined();
    expect(outcomes.get('200')).toBeGreaterThan(0);
  }, 60_000);
});

/**
 * A disk store on a real file system of 8 MiB: a tmpfs mounted in a mount namespace of the edge's own
 * (unshare -rm works without root), so the test needs no privileges and leaves no mount behind.
 */
describe.runIf(haveUnshare)('edge on a full disk (an 8 MiB tmpfs under a 64 MiB budget)', () => {
  const dir = tempDir('larder-edge-full-');
  let edge: EdgeProcess;
  const agent = new http.Agent({ keepAlive: true });
  beforeAll(async () => {
    edge = await startEdgeProcess({
      runtime: 'node',
      args: ['--store', `disk:${dir.path}`, '--max-size', '64MiB'],
      wrapper: ['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=8m larder-test "$0" && exec "$@"', dir.path],
    });
  });
  afterAll(async () => {
    agent.destroy();
    await edge?.stop();
    dir.remove();
  });

  it('warns at start that the budget is larger than the file system', async () => {
    await edge.waitForOutput(/WARN .*budget .*larger than the file system/);
  });

  it('evicts and retries when the disk fills, instead of failing every upload from then on', async () => {
    const blobs = Array.from({ length: 24 }, () => randomBlob(1024 * 1024));
    for (const [i, { data, hash }] of blobs.entries()) {
      const put = await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data);
      expect(put.status, `upload ${i}: ${put.body.toString()}`).toBe(200);
    }
    // The newest are there, the oldest made room for them.
    const last = blobs.at(-1)!;
    expect(bytesOf((await request(agent, `${edge.url}/cas/${last.hash}`, 'GET')).body)).toEqual(bytesOf(last.data));
    expect((await request(agent, `${edge.url}/cas/${blobs[0]!.hash}`, 'HEAD')).status).toBe(404);
  });
});
