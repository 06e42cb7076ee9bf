// The edge over S3 when things go wrong or get big: a 200 MiB multipart round trip in flat memory, a wrong hash
// over multipart that leaves nothing behind, S3 going away and coming back, and S3 too slow to answer.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, edgeRuntimes } from '../helpers/edge-process.ts';
import { randomBlob, request, sha256 } from '../helpers/http.ts';
import { peakRssMiB } from '../helpers/proc.ts';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

const MiB = 1024 * 1024;
let server: S3Server;
let proxy: TcpProxy;
beforeAll(async () => {
  server = await startS3Server();
  proxy = await startTcpProxy(server.port);
});
afterAll(async () => {
  await proxy?.close();
  await server?.destroy();
});

const runtimes = edgeRuntimes();
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
afterAll(() => agent.destroy());

/** A blob of `size` bytes made chunk by chunk (never held whole), with its hash; `corrupt` flips its last byte. */
function bigBlob(size: number, seed: string) {
  const chunk = (i: number) => createHash('sha512').update(`${seed} ${i}`).digest().toString('hex').repeat(512); // 64 KiB
  const chunks = size / (64 * 1024);
  const hasher = createHash('sha256');
  for (let i = 0; i < chunks; i++) hasher.update(chunk(i));
  const upload = (url: string, corrupt = false) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(url, { method: 'PUT', agent, headers: { 'content-length': size } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      let i = 0;
      const pump = () => {
        while (i < chunks) {
          let data = chunk(i++);
          if (corrupt && i === chunks) data = data.slice(0, -1) + (data.endsWith('0') ? '1' : '0');
          if (!req.write(data)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
  return { hash: hasher.digest('hex'), upload };
}

function download(url: string): Promise<{ status: number; hash: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        h.update(d);
        bytes += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode!, hash: h.digest('hex'), bytes }));
      res.on('error', reject);
    });
  });
}

const timed = async <T>(call: () => Promise<T>) => {
  const started = Date.now();
  const result = await call();
  return { ...result, ms: Date.now() - started };
};

for (const runtime of runtimes) {
  describe(`edge on ${runtime} over S3`, () => {
    it('round-trips a 200 MiB blob as a multipart upload with flat memory', async () => {
      const prefix = `big-${runtime}-${randomUUID()}`;
      const edge = await startEdgeProcess({
        runtime,
        args: ['--store', `s3://${S3_BUCKET}/${prefix}`, '--max-blob-size', '1GiB'],
        env: server.env(),
      });
      try {
        const blob = bigBlob(200 * MiB, `big ${prefix}`);
        const before = peakRssMiB(edge.pid);
        expect((await blob.upload(`${edge.url}/cas/${blob.hash}`)).status).toBe(200);
        expect(await server.list(`${prefix}/`)).toEqual([
          { key: `${prefix}/_default/cas/${blob.hash}`, size: 200 * MiB },
        ]);
        const got = await download(`${edge.url}/cas/${blob.hash}`);
        expect(got).toMatchObject({ status: 200, hash: blob.hash, bytes: 200 * MiB });
        const growth = peakRssMiB(edge.pid) - before;
        expect(growth, `peak RSS grew by ${growth.toFixed(0)} MiB`).toBeLessThan(128);
      } finally {
        await edge.stop();
      }
    }, 120_000);

    it('publishes nothing for a multipart upload whose hash is wrong', async () => {
      const prefix = `bad-${runtime}-${randomUUID()}`;
      const edge = await startEdgeProcess({
        runtime,
        args: ['--store', `s3://${S3_BUCKET}/${prefix}`],
        env: server.env(proxy.url),
      });
      try {
        const blob = bigBlob(40 * MiB, `bad ${prefix}`);
        const from = proxy.requests.length;
        const res = await blob.upload(`${edge.url}/cas/${blob.hash}`, true);
        expect(res.status).toBe(400);
        expect(res.body).toMatch(/sha256 mismatch/);
        const sent = proxy.requests.slice(from).filter((r) => r.includes(prefix));
        expect(sent.filter((r) => /^PUT .*partNumber=/.test(r)).length).toBeGreaterThanOrEqual(4); // it really was multipart
        expect(sent.filter((r) => /^POST .*uploadId=/.test(r))).toEqual([]); // never completed
        expect(sent.filter((r) => /^DELETE .*uploadId=/.test(r))).toHaveLength(1); // aborted
        // s3rver cannot list in-progress uploads; the bucket listing shows no object.
        expect(await server.list(`${prefix}/`)).toEqual([]);
        expect((await request(agent, `${edge.url}/cas/${blob.hash}`, 'HEAD')).status).toBe(404);
      } finally {
        await edge.stop();
      }
    }, 60_000);

    describe('tiered(memory, s3) when S3 fails', () => {
      const prefix = `faults-${runtime}-${randomUUID()}`;
      let edge: EdgeProcess;
      const inFront = randomBlob(20_000);
      const onlyInS3 = randomBlob(20_000);
      const url = (hash: string) => `${edge.url}/cas/${hash}`;

      beforeAll(async () => {
        // Reached through the proxy, so the slow test can add latency; the proxy follows the server's port.
        edge = await startEdgeProcess({
          runtime,
          args: ['--store', `tiered(memory:64MiB,s3://${S3_BUCKET}/${prefix}?timeout=2s)`],
          env: server.env(proxy.url),
        });
        expect((await request(agent, url(inFront.hash), 'PUT', inFront.data)).status).toBe(200);
        // Written behind the edge's back (another edge, say), so its memory tier does not have it.
        await server.client().send(
          new PutObjectCommand({
            Bucket: S3_BUCKET,
            Key: `${prefix}/_default/cas/${onlyInS3.hash}`,
            Body: onlyInS3.data,
          }),
        );
      });
      afterAll(() => edge?.stop());

      it('serves front-tier hits while S3 is down, answers 503 for the rest, and recovers when it is back', async () => {
        await server.stop();
        try {
          expect(sha256((await request(agent, url(inFront.hash), 'GET')).body)).toBe(inFront.hash);
          expect((await request(agent, url(inFront.hash), 'HEAD')).status).toBe(200);
          const fresh = randomBlob(1000);
          for (const [method, hash, body] of [
            ['GET', onlyInS3.hash],
            ['HEAD', onlyInS3.hash],
            ['GET', randomBlob(10).hash],
            ['PUT', fresh.hash, fresh.data],
          ] as const) {
            const res = await timed(() => request(agent, url(hash), method, body));
            expect(res.status, `${method} ${res.body.toString()}`).toBe(503);
            if (method !== 'HEAD') expect(res.body.toString()).toMatch(/^s3: /);
            expect(res.ms).toBeLessThan(5_000);
          }
        } finally {
          await server.restart();
        }
        // Same edge process, no restart: S3 answers again.
        expect(sha256((await request(agent, url(onlyInS3.hash), 'GET')).body)).toBe(onlyInS3.hash);
        const later = randomBlob(1000);
        expect((await request(agent, url(later.hash), 'PUT', later.data)).status).toBe(200);
        expect(await server.list(`${prefix}/_default/cas/${later.hash}`)).toHaveLength(1);
      }, 60_000);

      it('answers 504 within its timeout when S3 is too slow, and recovers when it is fast again', async () => {
        const slow = randomBlob(20_000);
        await server
          .client()
          .send(
            new PutObjectCommand({ Bucket: S3_BUCKET, Key: `${prefix}/_default/cas/${slow.hash}`, Body: slow.data }),
          );
        proxy.delayMs = 15_000;
        try {
          const hit = await timed(() => request(agent, url(inFront.hash), 'GET'));
          expect(hit.status).toBe(200);
          expect(hit.ms).toBeLessThan(1_000);
          const res = await timed(() => request(agent, url(slow.hash), 'GET'));
          expect(res.status, res.body.toString()).toBe(504);
          expect(res.body.toString()).toMatch(/^s3: GET cas\/.* timed out/);
          expect(res.ms).toBeGreaterThanOrEqual(1_500);
          expect(res.ms).toBeLessThan(4_000);
        } finally {
          proxy.delayMs = 0;
        }
        const recovered = await request(agent, url(slow.hash), 'GET');
        expect(recovered.status).toBe(200);
        expect(sha256(recovered.body)).toBe(slow.hash);
      }, 60_000);
    });
  });
}
