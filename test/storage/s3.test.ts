// The S3 store against a real S3-compatible server (s3rver on loopback): the store contract alone and behind
// memory and disk tiers, the key layout, multipart uploads that publish only verified bodies, and faults.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobKey } from '../../shared/digest.ts';
import { DiskStore } from '../../shared/storage/disk.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import { S3Store, type S3StoreOptions } from '../../shared/storage/s3.ts';
import { objectBody } from '../../shared/storage/s3-body.ts';
import { collect, streamOf } from '../../shared/storage/streams.ts';
import { TieredStore } from '../../shared/storage/tiered.ts';
import { verifying } from '../../shared/storage/verifying.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { sha256 } from '../helpers/http.ts';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { describeStoreContract } from './store-contract.ts';
import { bytesOf } from '../helpers/bytes.ts';
import { larderCode } from '../helpers/errors.ts';

const MiB = 1024 * 1024;
let server: S3Server;
const dirs: Array<{ remove: () => void }> = [];
beforeAll(async () => {
  server = await startS3Server();
});
afterAll(async () => {
  await server?.destroy();
  for (const d of dirs) d.remove();
});

const s3 = (overrides: Partial<S3StoreOptions> = {}) =>
  new S3Store({
    bucket: S3_BUCKET,
    prefix: `test-${randomUUID()}`,
    region: 'us-east-1',
    endpoint: server.endpoint,
    forcePathStyle: true,
    timeoutMs: 10_000,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    ...overrides,
  });
const disk = (maxBytes: number) => {
  const dir = tempDir();
  dirs.push(dir);
  return DiskStore.open({ path: dir.path, maxBytes });
};
const cas = (data: Uint8Array, instance = '') => blobKey(instance, 'cas', sha256(data));
const read = async (store: { get: S3Store['get'] }, key: ReturnType<typeof cas>) => {
  const blob = await store.get(key);
  return blob === null ? null : Buffer.from(await collect(blob.body, 1 << 30));
};

describeStoreContract('s3', { open: async () => s3(), bounded: false });
describeStoreContract('tiered(memory, s3)', {
  open: async (budget) => new TieredStore({ front: new MemoryStore({ maxBytes: budget }), back: s3() }),
  bounded: false,
});
describeStoreContract('tiered(memory, disk, s3)', {
  open: async (budget) =>
    new TieredStore({
      front: new MemoryStore({ maxBytes: budget }),
      back: new TieredStore({ front: await disk(budget), back: s3() }),
    }),
  bounded: false,
});

describe('s3 store', () => {
  it('lays keys out as {prefix}/{instance}/{ac|cas}/{hash}, the default instance visible', async () => {
    const prefix = `layout-${randomUUID()}`;
    const store = s3({ prefix });
    const data = randomBytes(100);
    await store.put(cas(data), streamOf(data), 100);
    await store.put(cas(data, 'team-a/linux'), streamOf(data), 100);
    const keys = (await server.list(`${prefix}/`)).map((o) => o.key).sort();
    expect(keys).toEqual([`${prefix}/_default/cas/${sha256(data)}`, `${prefix}/i-team-a/linux/cas/${sha256(data)}`]);
  });

  describe('through a request-logging proxy', () => {
    let proxy: TcpProxy;
    beforeAll(async () => {
      proxy = await startTcpProxy(server.port);
    });
    afterAll(() => proxy?.close());
    const viaProxy = (overrides: Partial<S3StoreOptions> = {}) =>
      s3({ endpoint: proxy.url, partBytes: 5 * MiB, ...overrides });
    const sent = (from: number, pattern: RegExp) => proxy.requests.slice(from).filter((r) => pattern.test(r));

    it('stat is a HEAD and never downloads the object', async () => {
      const store = viaProxy();
      const data = randomBytes(3 * MiB);
      await store.put(cas(data), streamOf(data), data.length);
      const from = proxy.requests.length;
      expect(await store.stat(cas(data))).toBe(data.length);
      expect(await store.stat(cas(randomBytes(10)))).toBeNull();
      expect(proxy.requests.slice(from).map((r) => r.split(' ')[0])).toEqual(['HEAD', 'HEAD']);
    });

    it('sends a small blob as one PutObject', async () => {
      const store = viaProxy();
      const data = randomBytes(MiB);
      const from = proxy.requests.length;
      await store.put(cas(data), streamOf(data), data.length);
      expect(proxy.requests.slice(from).map((r) => r.split(' ')[0])).toEqual(['PUT']);
    });

    it('sends one PutObject for a CAS blob uploaded 50 times at once, and one per action-cache upload', async () => {
      const store = viaProxy();
      const data = randomBytes(256 * 1024);
      const from = proxy.requests.length;
      await Promise.all(Array.from({ length: 50 }, () => store.put(cas(data), streamOf(data), data.length)));
      expect(sent(from, /^PUT /)).toHaveLength(1);
      expect(await read(store, cas(data))).toEqual(data);

      // An action-cache key may be given other content by each writer: every upload is sent.
      const acKey = blobKey('', 'ac', sha256(randomBytes(8)));
      const afterCas = proxy.requests.length;
      await Promise.all([1, 2, 3].map((n) => store.put(acKey, streamOf(Buffer.from([n])), 1)));
      expect(sent(afterCas, /^PUT /)).toHaveLength(3);
    });

    it('uploads a large blob in parts and completes it', async () => {
      const store = viaProxy();
      const data = randomBytes(12 * MiB);
      const from = proxy.requests.length;
      await verifying(store).put(cas(data), chunked(data), data.length);
      expect(sent(from, /^POST .*\?uploads/)).toHaveLength(1);
      expect(sent(from, /^PUT .*partNumber=/)).toHaveLength(3);
      expect(sent(from, /^POST .*uploadId=/)).toHaveLength(1);
      expect(bytesOf(await read(store, cas(data)))).toEqual(bytesOf(data));
    });

    // The verifier errors the body after its last byte; the store must abort, never complete.
    for (const [name, size] of [
      ['a short last part', 12 * MiB],
      ['an exact multiple of the part size', 10 * MiB],
    ] as const) {
      it(`never completes a multipart upload whose hash is wrong (${name})`, async () => {
        const prefix = `bad-${randomUUID()}`;
        const store = viaProxy({ prefix });
        const data = randomBytes(size);
        const key = cas(data);
        data[data.length - 1]! ^= 1; // same length, different hash: only the end of the stream can tell
        const from = proxy.requests.length;
        const err = await verifying(store)
          .put(key, chunked(data), data.length)
          .catch((e: unknown) => e);
        expect(larderCode(err)).toBe('digest_mismatch');
        expect(sent(from, /^POST .*\?uploads/)).toHaveLength(1);
        expect(sent(from, /^POST .*uploadId=/)).toEqual([]); // CompleteMultipartUpload never sent
        expect(sent(from, /^DELETE .*uploadId=/)).toHaveLength(1); // AbortMultipartUpload sent
        expect(await server.list(`${prefix}/`)).toEqual([]);
        expect(await store.stat(key)).toBeNull();
      });
    }

    it('never completes a wrong-hash multipart upload behind a memory tier, and the tier keeps nothing', async () => {
      const prefix = `bad-tiered-${randomUUID()}`;
      const front = new MemoryStore({ maxBytes: 64 * MiB });
      const store = verifying(new TieredStore({ front, back: viaProxy({ prefix }) }));
      const data = randomBytes(12 * MiB);
      const key = cas(data);
      data[0]! ^= 1;
      const from = proxy.requests.length;
      const err = await store.put(key, chunked(data), data.length).catch((e: unknown) => e);
      expect(larderCode(err)).toBe('digest_mismatch');
      expect(sent(from, /^POST .*uploadId=/)).toEqual([]);
      expect(await server.list(`${prefix}/`)).toEqual([]);
      expect(await front.stat(key)).toBeNull();
    });

    it('aborts when the client goes away mid-upload', async () => {
      const prefix = `gone-${randomUUID()}`;
      const store = viaProxy({ prefix });
      const data = randomBytes(12 * MiB);
      let sentBytes = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sentBytes >= 7 * MiB) return controller.error(new Error('client went away'));
          controller.enqueue(data.subarray(sentBytes, sentBytes + MiB));
          sentBytes += MiB;
        },
      });
      const from = proxy.requests.length;
      const err = await store.put(cas(data), body, data.length).catch((e: unknown) => e);
      expect(larderCode(err)).toBe('aborted');
      expect(sent(from, /^POST .*uploadId=/)).toEqual([]);
      expect(await server.list(`${prefix}/`)).toEqual([]);
    });

    it('answers 504-class timeouts within its bound when S3 is slow, and recovers', async () => {
      const store = viaProxy({ timeoutMs: 1500 });
      const data = randomBytes(1000);
      await store.put(cas(data), streamOf(data), data.length);
      proxy.delayMs = 10_000;
      try {
        for (const attempt of [
          () => store.stat(cas(data)),
          () => store.get(cas(data)),
          () => store.put(cas(randomBytes(10)), streamOf(randomBytes(10)), 10),
        ]) {
          const started = Date.now();
          const err = await attempt().catch((e: unknown) => e);
          expect(larderCode(err)).toBe('timeout');
          expect(Date.now() - started).toBeLessThan(4_000);
        }
      } finally {
        proxy.delayMs = 0;
      }
      expect(await store.stat(cas(data))).toBe(1000);
    }, 30_000);
  });

  it('answers unavailable while S3 is down, and recovers when it is back', async () => {
    const store = s3({ timeoutMs: 5_000 });
    const data = randomBytes(1000);
    await store.put(cas(data), streamOf(data), data.length);
    await server.stop();
    try {
      for (const attempt of [
        () => store.stat(cas(data)),
        () => store.get(cas(data)),
        () => store.put(cas(randomBytes(10)), streamOf(randomBytes(10)), 10),
      ]) {
        const started = Date.now();
        const err = await attempt().catch((e: unknown) => e);
        expect(larderCode(err)).toBe('unavailable');
        expect(Date.now() - started).toBeLessThan(5_000);
      }
    } finally {
      await server.restart();
    }
    expect(bytesOf(await read(store, cas(data)))).toEqual(bytesOf(data));
  }, 30_000);

  it('errors a body that stalls mid-stream instead of hanging (Node Readable and web stream bodies)', async () => {
    const stalled = async function* () {
      yield new Uint8Array(10);
      await new Promise(() => {}); // S3 stops sending
    };
    const bodies = [
      stalled(),
      new ReadableStream({
        pull(c) {
          c.enqueue(new Uint8Array(10));
          return new Promise(() => {});
        },
      }),
    ];
    for (const body of bodies) {
      const reader = objectBody(body, 'GET cas/x', 300).getReader();
      expect((await reader.read()).value?.length).toBe(10);
      const started = Date.now();
      const err = await reader.read().catch((e: unknown) => e);
      expect(larderCode(err)).toBe('timeout');
      expect(Date.now() - started).toBeLessThan(2_000);
    }
  });

  it('streams a large object out without holding it', async () => {
    const store = s3();
    const data = randomBytes(20 * MiB);
    await store.put(cas(data), streamOf(data), data.length);
    const blob = await store.get(cas(data));
    expect(blob?.size).toBe(data.length);
    const hash = createHash('sha256');
    let chunks = 0;
    for await (const chunk of blob!.body) {
      hash.update(chunk);
      chunks++;
    }
    expect(hash.digest('hex')).toBe(sha256(data));
    expect(chunks).toBeGreaterThan(1);
  });
});

/** A body in 256 KiB chunks, as an HTTP upload arrives. */
function chunked(data: Uint8Array): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= data.length) return controller.close();
      controller.enqueue(data.subarray(offset, offset + 256 * 1024));
      offset += 256 * 1024;
    },
  });
}
