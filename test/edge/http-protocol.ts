/**
 * The HTTP cache protocol suite, run against a real `larder edge` process over real sockets. One suite,
 * many targets: node.test.ts and deno.test.ts run it on each runtime, and store suites run it per backend.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ActionResultSchema,
  DigestSchema,
  OutputFileSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { type EdgeProcess, type Runtime, startEdgeProcess } from '../helpers/edge-process.ts';
import { abortedUpload, randomBlob, rawRequest, request, sha256 } from '../helpers/http.ts';
import { peakRssMiB } from '../helpers/proc.ts';
import { WHOLE_BODY_MAX } from '../../edge/bodies.ts';
import { bytesOf } from '../helpers/bytes.ts';

export interface ProtocolTarget {
  runtime: Runtime;
  /** --store arguments and any environment the store needs, plus a cleanup. */
  store: () => Promise<{ args: string[]; env?: Record<string, string>; cleanup: () => Promise<void> | void }>;
  /** False for stores that hold blobs in memory by design: the flat-memory check is skipped for them. */
  streamsToStorage?: boolean;
}

const MAX_BLOB = 300 * 1024 * 1024;

export function describeHttpProtocol(name: string, target: ProtocolTarget): void {
  describe(name, () => {
    let edge: EdgeProcess;
    let cleanup: () => Promise<void> | void;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
    const url = (path: string) => `${edge.url}${path}`;

    beforeAll(async () => {
      const store = await target.store();
      cleanup = store.cleanup;
      edge = await startEdgeProcess({
        runtime: target.runtime,
        args: [...store.args, '--max-blob-size', String(MAX_BLOB)],
        env: store.env,
      });
    });

    afterAll(async () => {
      agent.destroy();
      await edge?.stop();
      await cleanup?.();
    });

    it('answers /healthz', async () => {
      const res = await fetch(url('/healthz'));
      expect(res.status).toBe(200);
    });

    it('stores a CAS blob and serves it back with GET and HEAD', async () => {
      const { data, hash } = randomBlob(10_000);
      expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
      expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
      const got = await request(agent, url(`/cas/${hash}`), 'GET');
      expect(got.status).toBe(200);
      expect(got.headers['content-length']).toBe('10000');
      expect(sha256(got.body)).toBe(hash);
      const head = await request(agent, url(`/cas/${hash}`), 'HEAD');
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toBe('10000');
      expect(head.body.length).toBe(0);
    });

    it('answers misses with 404 on GET and HEAD', async () => {
      const { hash } = randomBlob(10);
      expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
      expect((await request(agent, url(`/cas/${hash}`), 'HEAD')).status).toBe(404);
      expect((await request(agent, url(`/ac/${hash}`), 'GET')).status).toBe(404);
    });

    it('always serves the empty blob', async () => {
      const empty = sha256('');
      const res = await request(agent, url(`/cas/${empty}`), 'GET');
      expect(res.status).toBe(200);
      expect(res.body.length).toBe(0);
      expect((await request(agent, url(`/cas/${empty}`), 'PUT', Buffer.alloc(0))).status).toBe(200);
    });

    it('refuses a CAS upload whose bytes do not match the hash, and stores nothing', async () => {
      const { hash } = randomBlob(1000);
      const res = await request(agent, url(`/cas/${hash}`), 'PUT', randomBlob(1000).data);
      expect(res.status).toBe(400);
      expect(res.body.toString()).toMatch(/sha256 mismatch/);
      expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
    });

    it('checks the hash even when the blob is already stored', async () => {
      const { data, hash } = randomBlob(2000);
      expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
      expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
      expect((await request(agent, url(`/cas/${hash}`), 'PUT', randomBlob(2000).data)).status).toBe(400);
      expect(sha256((await request(agent, url(`/cas/${hash}`), 'GET')).body)).toBe(hash);
    });

    it('refuses malformed hashes and hostile paths with 400', async () => {
      const { data, hash } = randomBlob(10);
      for (const path of [
        `/cas/${hash.toUpperCase()}`,
        `/cas/${hash.slice(1)}`,
        `/cas/${hash}x`,
        '/cas/..%2F..%2Fetc%2Fpasswd',
      ]) {
        expect((await request(agent, url(path), 'PUT', data)).status, path).toBe(400);
      }
      for (const path of [
        `/../../etc/cas/${hash}`,
        `/a/%2e%2e/cas/${hash}`,
        `/..%2F..%2Ftmp/cas/${hash}`,
        `/.hidden/cas/${hash}`,
      ]) {
        // Some of these normalise to a valid path and reach the store; keep our side open until the answer comes
        // (Node's server drops a request whose client half-closed before a slow store, such as S3, replied).
        const res = await rawRequest(edge.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, {
          endAfterWrite: false,
        });
        expect([400, 404], `${path}: ${res.status} ${res.text}`).toContain(res.status);
      }
    });

    it('answers 404 for non-cache paths and 405 for other methods', async () => {
      const { hash } = randomBlob(10);
      expect((await fetch(url('/nothing-here'))).status).toBe(404);
      const del = await fetch(url(`/cas/${hash}`), { method: 'DELETE' });
      expect(del.status).toBe(405);
      expect(del.headers.get('allow')).toContain('PUT');
      expect((await fetch(url(`/cas/${hash}`), { method: 'POST', body: 'x' })).status).toBe(405);
    });

    it('refuses an upload without Content-Length with 411', async () => {
      const { hash } = randomBlob(10);
      const res = await rawRequest(
        edge.url,
        `PUT /cas/${hash} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
      );
      expect(res.status).toBe(411);
      expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
    });

    it('refuses an oversized blob with 413 before reading it', async () => {
      const { hash } = randomBlob(10);
      const res = await rawRequest(
        edge.url,
        `PUT /cas/${hash} HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BLOB + 1}\r\nConnection: close\r\n\r\n`,
      );
      expect(res.status).toBe(413);
    });

    it('refuses a body shorter than its Content-Length and keeps serving', async () => {
      const { data, hash } = randomBlob(1000);
      await abortedUpload(edge.url, `/cas/${hash}`, 1000, 400);
      expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
      expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
    });

    // Uploads up to WHOLE_BODY_MAX are read whole (on Node straight from the socket), larger ones stream: the
    // answers must be the same on either path.
    for (const [path, size] of [
      ['read whole', 5000],
      ['streamed', WHOLE_BODY_MAX + 1000],
    ] as const) {
      describe(`uploads ${path} (${size} bytes)`, () => {
        it('stores, serves with GET and HEAD, and accepts a re-upload; refuses wrong bytes even when stored', async () => {
          const { data, hash } = randomBlob(size);
          expect((await request(agent, url(`/cas/${hash}`), 'HEAD')).status).toBe(404);
          expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
          expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
          const wrong = await request(agent, url(`/cas/${hash}`), 'PUT', randomBlob(size).data);
          expect(wrong.status).toBe(400);
          expect(wrong.body.toString()).toMatch(/sha256 mismatch/);
          const got = await request(agent, url(`/cas/${hash}`), 'GET');
          expect(got.status).toBe(200);
          expect(sha256(got.body)).toBe(hash);
          const head = await request(agent, url(`/cas/${hash}`), 'HEAD');
          expect([head.status, head.headers['content-length']]).toEqual([200, String(size)]);
        });

        it('refuses wrong bytes for a new blob and stores nothing', async () => {
          const { hash } = randomBlob(size);
          expect((await request(agent, url(`/cas/${hash}`), 'PUT', randomBlob(size).data)).status).toBe(400);
          expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
          expect((await request(agent, url(`/cas/${hash}`), 'HEAD')).status).toBe(404);
        });

        it('stores nothing from an upload cut off midway, and keeps serving', async () => {
          const { data, hash } = randomBlob(size);
          await abortedUpload(edge.url, `/cas/${hash}`, size, Math.floor(size / 2));
          expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
          expect((await request(agent, url(`/cas/${hash}`), 'PUT', data)).status).toBe(200);
        });
      });
    }

    it('keeps instances apart', async () => {
      const { data, hash } = randomBlob(100);
      expect((await request(agent, url(`/team-a/cas/${hash}`), 'PUT', data)).status).toBe(200);
      expect((await request(agent, url(`/team-a/cas/${hash}`), 'GET')).status).toBe(200);
      expect((await request(agent, url(`/team-b/cas/${hash}`), 'GET')).status).toBe(404);
      expect((await request(agent, url(`/cas/${hash}`), 'GET')).status).toBe(404);
      expect((await request(agent, url(`/org/team-a/cas/${hash}`), 'GET')).status).toBe(404);
    });

    describe('action cache', () => {
      const actionResult = (outputs: Array<{ hash: string; size: number }>, stdout?: { hash: string; size: number }) =>
        Buffer.from(
          toBinary(
            ActionResultSchema,
            create(ActionResultSchema, {
              exitCode: 0,
              outputFiles: outputs.map((o, i) =>
                create(OutputFileSchema, {
                  path: `out/${i}`,
                  digest: create(DigestSchema, { hash: o.hash, sizeBytes: BigInt(o.size) }),
                }),
              ),
              stdoutDigest: stdout
                ? create(DigestSchema, { hash: stdout.hash, sizeBytes: BigInt(stdout.size) })
                : undefined,
            }),
          ),
        );
      const actionKey = () => sha256(`action ${Math.random()}`);

      it('stores and serves an ActionResult whose outputs are present', async () => {
        const out = randomBlob(500);
        await request(agent, url(`/cas/${out.hash}`), 'PUT', out.data);
        const entry = actionResult([{ hash: out.hash, size: 500 }]);
        const key = actionKey();
        expect((await request(agent, url(`/ac/${key}`), 'PUT', entry)).status).toBe(200);
        const got = await request(agent, url(`/ac/${key}`), 'GET');
        expect(got.status).toBe(200);
        expect(bytesOf(got.body)).toEqual(bytesOf(entry));
      });

      it('answers 404 for an entry whose outputs are gone from the CAS', async () => {
        const present = randomBlob(100);
        await request(agent, url(`/cas/${present.hash}`), 'PUT', present.data);
        const missing = randomBlob(100);
        const key = actionKey();
        const entry = actionResult([{ hash: present.hash, size: 100 }], { hash: missing.hash, size: 100 });
        expect((await request(agent, url(`/ac/${key}`), 'PUT', entry)).status).toBe(200);
        expect((await request(agent, url(`/ac/${key}`), 'GET')).status).toBe(404);
        // HEAD answers what GET would: Bazel may probe with HEAD and must not be told of an unusable entry.
        expect((await request(agent, url(`/ac/${key}`), 'HEAD')).status).toBe(404);
        await request(agent, url(`/cas/${missing.hash}`), 'PUT', missing.data);
        expect((await request(agent, url(`/ac/${key}`), 'GET')).status).toBe(200);
        const head = await request(agent, url(`/ac/${key}`), 'HEAD');
        expect(head.status).toBe(200);
        expect(head.headers['content-length']).toBe(String(entry.byteLength));
      });

      it('refuses an AC upload that is not an ActionResult', async () => {
        const key = actionKey();
        const res = await request(agent, url(`/ac/${key}`), 'PUT', Buffer.from([0xff, 0xff, 0xff, 0x0f]));
        expect(res.status).toBe(400);
        expect(res.body.toString()).toMatch(/ActionResult/);
        expect((await request(agent, url(`/ac/${key}`), 'GET')).status).toBe(404);
      });
    });

    it('stores one blob uploaded 50 times at once', async () => {
      const { data, hash } = randomBlob(256 * 1024);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => request(agent, url(`/cas/${hash}`), 'PUT', data)),
      );
      expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
      expect(sha256((await request(agent, url(`/cas/${hash}`), 'GET')).body)).toBe(hash);
    });

    it('serves 100 concurrent keep-alive connections without errors', async () => {
      const blobs = Array.from({ length: 100 }, () => randomBlob(8 * 1024));
      const wide = new http.Agent({ keepAlive: true, maxSockets: 100 });
      try {
        const puts = await Promise.all(blobs.map((b) => request(wide, url(`/cas/${b.hash}`), 'PUT', b.data)));
        expect(puts.map((r) => r.status).filter((status) => status !== 200)).toEqual([]);
        for (let round = 0; round < 3; round++) {
          const gets = await Promise.all(blobs.map((b) => request(wide, url(`/cas/${b.hash}`), 'GET')));
          expect(gets.map((r) => [r.status, sha256(r.body)])).toEqual(blobs.map((b) => [200, b.hash]));
        }
      } finally {
        wide.destroy();
      }
    });

    // Registered only where it applies: a memory store holds blobs in memory by design.
    if (target.streamsToStorage !== false)
      it('streams a 256 MiB blob in and out with flat memory', async () => {
        const size = 256 * 1024 * 1024;
        const chunk = (i: number) =>
          createHash('sha512').update(`chunk ${i}`).digest().subarray(0, 64).toString('hex').repeat(512); // 128 hex chars × 512 = 64 KiB
        const chunks = size / (64 * 1024);
        const hasher = createHash('sha256');
        for (let i = 0; i < chunks; i++) hasher.update(chunk(i));
        const hash = hasher.digest('hex');
        const before = peakRssMiB(edge.pid);

        const put = await new Promise<number>((resolve, reject) => {
          const req = http.request(
            url(`/cas/${hash}`),
            { method: 'PUT', agent, headers: { 'content-length': size } },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode!));
            },
          );
          req.on('error', reject);
          let i = 0;
          const pump = () => {
            while (i < chunks) if (!req.write(chunk(i++))) return void req.once('drain', pump);
            req.end();
          };
          pump();
        });
        expect(put).toBe(200);

        const got = await new Promise<string>((resolve, reject) => {
          http.get(url(`/cas/${hash}`), { agent }, (res) => {
            const h = createHash('sha256');
            res.on('data', (d: Buffer) => h.update(d));
            res.on('end', () => resolve(h.digest('hex')));
            res.on('error', reject);
          });
        });
        expect(got).toBe(hash);
        const growth = peakRssMiB(edge.pid) - before;
        expect(growth, `peak RSS grew by ${growth.toFixed(0)} MiB`).toBeLessThan(128);
      }, 120_000);
  });
}
