/** What survives a crash, a restart and a full disk: the edge as a real process with a real disk store. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { abortedUpload, randomBlob, request } from '../helpers/http.ts';
import { bunPath, failUnlessRoot, needsRoot, requireTool } from '../helpers/tools.ts';
import { bytesOf } from '../helpers/bytes.ts';
import { filesUnder, uploadLeftovers } from '../helpers/files.ts';

const dir = tempDir();
afterAll(() => dir.remove());

describe('edge restarts', () => {
  const agent = new http.Agent({ keepAlive: false });

  it('serves what it stored after kill -9 and a restart, and shows nothing of an upload cut off by the crash', async () => {
    const store = join(dir.path, 'crash');
    const first = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${store}`] });
    const kept = Array.from({ length: 20 }, () => randomBlob(50_000));
    for (const blob of kept)
      expect((await request(agent, `${first.url}/cas/${blob.hash}`, 'PUT', blob.data)).status).toBe(200);

    // An upload in flight when the process dies: half of its bytes are already on disk in tmp/.
    const torn = randomBlob(4 << 20);
    await abortedUpload(first.url, `/cas/${torn.hash}`, 4 << 20, 2 << 20).catch(() => {});
    await first.kill9();

    const second = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${store}`] });
    try {
      for (const blob of kept) {
        const res = await request(agent, `${second.url}/cas/${blob.hash}`, 'GET');
        expect(res.status).toBe(200);
        expect(bytesOf(res.body)).toEqual(bytesOf(blob.data));
      }
      expect((await request(agent, `${second.url}/cas/${torn.hash}`, 'GET')).status).toBe(404);
      // Only the running process's own (empty) upload folder is left; the dead one's went at start-up.
      expect(filesUnder(join(store, 'tmp'))).toEqual([]);
      expect(readdirSync(join(store, 'tmp')).filter((name) => !name.startsWith(`p${second.pid}-`))).toEqual([]);
    } finally {
      await second.stop();
    }
  });

  it('starts on its defaults: a disk store under the user cache directory', async () => {
    const home = join(dir.path, 'home');
    mkdirSync(home);
    const edge = await startEdgeProcess({
      runtime: 'node',
      env: { HOME: home, XDG_CACHE_HOME: '', LARDER_LISTEN: '127.0.0.1:0' },
      args: [],
    });
    try {
      const blob = randomBlob(100);
      expect((await request(agent, `${edge.url}/cas/${blob.hash}`, 'PUT', blob.data)).status).toBe(200);
      const stored = join(home, '.cache/larder/blobs/_/cas', blob.hash.slice(0, 2), blob.hash);
      expect(existsSync(stored), stored).toBe(true);
    } finally {
      await edge.stop();
    }
  });
});

// Needs root to mount a small tmpfs; CI runs as root, so there it must run.
const MOUNTS = 'the full-disk test mounts a tmpfs';

// On Bun a blob in hand is written by another path than on Node (disk-files.ts): both are run.
const runtimes = [
  'node',
  ...(requireTool('bun', bunPath(), 'npm ci installs it from @oven/bun-linux-x64') ? ['bun'] : []),
];

describe.runIf(needsRoot(MOUNTS)).each(runtimes as Array<'node' | 'bun'>)('full disk on %s', (runtime) => {
  beforeAll(() => failUnlessRoot(MOUNTS));

  /** An edge whose disk store (budget 1 GiB) sits on a 2 MiB tmpfs of its own, for `test`; unmounted after. */
  async function onSmallDisk(
    name: string,
    test: (edge: { url: string }, agent: http.Agent, mount: string) => Promise<void>,
  ): Promise<void> {
    const mount = join(dir.path, `${name}-${runtime}`);
    mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mount]);
    const agent = new http.Agent({ keepAlive: false });
    try {
      const edge = await startEdgeProcess({ runtime, args: ['--store', `disk:${mount}/cache`, '--max-size', '1GiB'] });
      try {
        await test(edge, agent, mount);
      } finally {
        await edge.stop();
      }
    } finally {
      execFileSync('umount', [mount]);
    }
  }

  it('answers 507 when the disk is full, keeps nothing partial, and recovers', async () => {
    await onSmallDisk('small-disk', async (edge, agent, mount) => {
      const big = randomBlob(3 << 20);
      const res = await request(agent, `${edge.url}/cas/${big.hash}`, 'PUT', big.data);
      expect(res.status).toBe(507);
      expect(res.body.toString()).toMatch(/full/);
      expect(uploadLeftovers(join(mount, 'cache/tmp'))).toEqual([]);
      expect((await request(agent, `${edge.url}/cas/${big.hash}`, 'GET')).status).toBe(404);
      const small = randomBlob(10_000);
      expect((await request(agent, `${edge.url}/cas/${small.hash}`, 'PUT', small.data)).status).toBe(200);
      expect(bytesOf((await request(agent, `${edge.url}/cas/${small.hash}`, 'GET')).body)).toEqual(bytesOf(small.data));
    });
  });
  // Bodies of up to 2 MiB are taken whole and written with one call: a full disk below the budget evicts least
  // recently used blobs and writes the blob again; with nothing left to evict it is a 507, and nothing partial stays.
  it('makes room for a whole upload on a full disk below the budget, or answers 507 when nothing can go', async () => {
    await onSmallDisk('small-disk-whole', async (edge, agent, mount) => {
      const old = randomBlob(1 << 20);
      expect((await request(agent, `${edge.url}/cas/${old.hash}`, 'PUT', old.data)).status).toBe(200);
      const next = randomBlob(1.5 * (1 << 20));
      expect((await request(agent, `${edge.url}/cas/${next.hash}`, 'PUT', next.data)).status).toBe(200);
      expect(bytesOf((await request(agent, `${edge.url}/cas/${next.hash}`, 'GET')).body)).toEqual(bytesOf(next.data));
      expect((await request(agent, `${edge.url}/cas/${old.hash}`, 'GET')).status).toBe(404);

      const tooBig = randomBlob(2 << 20);
      const res = await request(agent, `${edge.url}/cas/${tooBig.hash}`, 'PUT', tooBig.data);
      expect(res.status).toBe(507);
      expect(uploadLeftovers(join(mount, 'cache/tmp'))).toEqual([]);
      expect((await request(agent, `${edge.url}/cas/${tooBig.hash}`, 'GET')).status).toBe(404);
    });
  });
});
