// The edge on Bun: the whole HTTP protocol suite (disk and memory stores), and what Bun does differently: a blob
// the disk store keeps in a file goes out with sendfile(2) (bun-body.ts), opened once (by Bun, the store only
// locates it), seen by strace attached to the server; one evicted behind the server's back is a clean miss. A whole
// upload's buffer is freed as soon as a disk store has it, never when the store may keep it (a memory tier).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob, request, sha256 } from '../helpers/http.ts';
import { delta, scrape } from '../helpers/prometheus.ts';
import { bunPath, findTool, REPO_ROOT, requireTool } from '../helpers/tools.ts';
import { describeHttpProtocol } from './http-protocol.ts';

const hasBun = requireTool('bun', bunPath(), 'npm ci installs it from @oven/bun-linux-x64');
const strace = findTool('/usr/bin/strace', 'strace');

describe.runIf(hasBun)('on Bun', () => {
  describeHttpProtocol('HTTP protocol on Bun, disk store', {
    runtime: 'bun',
    store: async () => {
      const dir = tempDir();
      return { args: ['--store', `disk:${dir.path}`], cleanup: dir.remove };
    },
  });

  describeHttpProtocol('HTTP protocol on Bun, memory store', {
    runtime: 'bun',
    store: async () => ({ args: ['--store', 'memory:1GiB'], cleanup: () => {} }),
    streamsToStorage: false,
  });

  it('frees a whole upload once the store is done with it, only when asked (bun-body.ts)', () => {
    // One Bun process runs the receiver on a real Request with and without `release`, and reports what the store's
    // put saw and what is left of those bytes afterwards (a freed buffer reads as 0 bytes).
    const script = `
      const { bunBodies } = await import(${JSON.stringify(`${REPO_ROOT}/edge/bun-body.ts`)});
      const results = {};
      for (const release of [true, false]) {
        const data = new Uint8Array(300000).fill(7);
        const request = new Request('http://edge/cas/x', { method: 'PUT', body: data });
        let body;
        let seen;
        await bunBodies(undefined, release)(request, undefined, data.byteLength, async (b) => {
          body = b;
          seen = [b.byteLength, b.every((x) => x === 7)];
        });
        results[release ? 'released' : 'kept'] = { seen, after: body.byteLength };
      }
      console.log(JSON.stringify(results));`;
    const result = spawnSync(bunPath()!, ['--eval', script], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      released: { seen: [300000, true], after: 0 },
      kept: { seen: [300000, true], after: 300000 },
    });
  });

  describe.runIf(requireTool('strace', strace, 'apt-get install strace'))('downloads', () => {
    const dir = tempDir();
    let edge: EdgeProcess;
    beforeAll(async () => {
      const htpasswd = join(dir.path, 'htpasswd');
      await writeFile(htpasswd, `ci:{SHA}${createHash('sha1').update('ci-password').digest('base64')}\n`);
      // Anonymous may read and write, as without an authenticator; `ci` signs in.
      const config = join(dir.path, 'larder.json');
      await writeFile(config, JSON.stringify({ auth: { anonymous: ['read', 'write'] } }));
      edge = await startEdgeProcess({
        runtime: 'bun',
        args: ['--store', `disk:${dir.path}/blobs`, '--htpasswd', htpasswd, '--config', config],
      });
    });
    afterAll(async () => {
      await edge?.stop();
      dir.remove();
    });

    it('sends a blob kept in a file with sendfile(2), opening its file once', async () => {
      const agent = new http.Agent({ keepAlive: true });
      const { data, hash } = randomBlob(1024 * 1024);
      expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
      // strace (started and stopped by this test, by its PID) reports the server's file and socket calls.
      const tracer = spawn(strace!, ['-f', '-qq', '-e', 'trace=sendfile,read,pread64,openat', '-p', String(edge.pid)], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let trace = '';
      tracer.stderr!.on('data', (d: Buffer) => (trace += d.toString()));
      try {
        // Attached once a traced call shows: the health check makes one (reading the request).
        await new Promise<void>((resolve, reject) => {
          const deadline = Date.now() + 20_000;
          const poke = async () => {
            if (/\w+\(/.test(trace)) return resolve();
            if (Date.now() > deadline || tracer.exitCode !== null) return reject(new Error(`strace: ${trace}`));
            await fetch(`${edge.url}/healthz`).then((r) => r.text());
            setTimeout(poke, 100);
          };
          void poke();
        });
        const got = await request(agent, `${edge.url}/cas/${hash}`, 'GET');
        expect([got.status, got.headers['content-length'], sha256(got.body)]).toEqual([200, String(data.length), hash]);
      } finally {
        const exited = new Promise((resolve) => tracer.once('exit', resolve));
        tracer.kill('SIGINT');
        await exited;
        agent.destroy();
      }
      const sent = [...trace.matchAll(/sendfile\(\d+, \d+, [^,]+, (\d+)\)\s+= (\d+)/g)].reduce(
        (n, m) => n + Number(m[2]),
        0,
      );
      expect(sent, trace.slice(-2000)).toBe(data.length);
      const opens = [...trace.matchAll(/openat\([^"]*"([^"]*)"/g)].filter((m) => m[1]!.endsWith(hash));
      expect(opens.length, trace.slice(-2000)).toBe(1);
    });

    it('sends a file with its length and type, and counts it, to anonymous and signed-in readers alike', async () => {
      // Anonymous downloads of located files are answered without a promise, signed-in ones after the password
      // check (cache-requests.ts): both are sent as files, and both are counted.
      const agent = new http.Agent({ keepAlive: true });
      try {
        const { data, hash } = randomBlob(1024 * 1024);
        expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
        const before = await scrape(`${edge.url}/metrics`);
        const signedIn = { authorization: `Basic ${btoa('ci:ci-password')}` };
        for (const headers of [{}, signedIn]) {
          const got = await request(agent, `${edge.url}/cas/${hash}`, 'GET', undefined, headers);
          expect([got.status, got.headers['content-length'], got.headers['content-type'], sha256(got.body)]).toEqual([
            200,
            String(data.length),
            'application/octet-stream',
            hash,
          ]);
        }
        const moved = delta(before, await scrape(`${edge.url}/metrics`));
        expect(moved('larder_bytes_total', { protocol: 'http', direction: 'out' })).toBe(2 * data.length);
        expect(moved('larder_requests_total', { protocol: 'http', method: 'GET', kind: 'cas', outcome: 'hit' })).toBe(
          2,
        );
      } finally {
        agent.destroy();
      }
    });

    it('answers a blob whose file was removed behind its back as a miss, and stores it again', async () => {
      const agent = new http.Agent({ keepAlive: true });
      try {
        const { data, hash } = randomBlob(256 * 1024);
        expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
        const blobs = `${dir.path}/blobs`;
        const files = (readdirSync(blobs, { recursive: true }) as string[]).filter((f) => f.endsWith(hash));
        expect(files).toHaveLength(1);
        rmSync(`${blobs}/${files[0]}`);
        const gone = await request(agent, `${edge.url}/cas/${hash}`, 'GET');
        expect(gone.status).toBe(404);
        expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
        const got = await request(agent, `${edge.url}/cas/${hash}`, 'GET');
        expect([got.status, sha256(got.body)]).toEqual([200, hash]);
      } finally {
        agent.destroy();
      }
    });
  });
});
