// Faults a long-running edge meets, against a real `larder edge` process over real sockets and a real disk:
// instance names at the limits of validation, and error answers that never reveal a server path.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob, request } from '../helpers/http.ts';

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
    ['the longest valid name of many short segments', Array.from({ length: 64 }, (_, i) => `s${i % 10}-`).join('/').slice(0, 256).replace(/\/$/, '')],
  ])('stores and serves under an instance name of %s', async (_, instance) => {
    const { data, hash } = randomBlob(5000);
    const put = await request(agent, `${edge.url}/${instance}/cas/${hash}`, 'PUT', data);
    expect(put.status, put.body.toString()).toBe(200);
    const got = await request(agent, `${edge.url}/${instance}/cas/${hash}`, 'GET');
    expect(got.status).toBe(200);
    expect(got.body.equals(data)).toBe(true);
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
      expect(edge.output()).toContain(broken);
    } finally {
      rmSync(broken, { force: true });
      mkdirSync(broken);
    }
  });
});
