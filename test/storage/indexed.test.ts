// A bucket index (shared/storage/indexed.ts) in Redis (executor/storage/redis-bucket-index.ts) in front of a real
// S3 server (s3rver), as frontends on different hosts use it: each its own disk tier, all sharing the bucket and
// Redis. What is checked is that answers stay true: "present" only for blobs the bucket holds, however the bucket
// or the index changed behind larder's back, and that a batch of digests costs the bucket no request at all.
import { randomBytes, randomUUID } from 'node:crypto';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { blobKey, type BlobKey } from '../../shared/digest.ts';
import { parseStoreSpec } from '../../shared/storage/config.ts';
import { openStore } from '../../shared/storage/from-config.ts';
import { IndexedStore } from '../../shared/storage/indexed.ts';
import { S3Store } from '../../shared/storage/s3.ts';
import { statMany } from '../../shared/storage/stat-many.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { bucketIndexOptions } from '../../executor/storage/bucket-index.ts';
import { RedisBucketIndex } from '../../executor/storage/redis-bucket-index.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { sha256 } from '../helpers/http.ts';
import { haveRedis, startRedis, type TestRedis } from '../helpers/redis.ts';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { describeStoreContract } from './store-contract.ts';

const HOUR = 3_600_000;
const MEMORY_QUEUE = { queue: 'memory', queueLeaseMs: 30_000, queuePasswordFile: '', queueCaPath: '' };

let redis: TestRedis;
let server: S3Server;
let proxy: TcpProxy;
let inspect: Redis;
const opened: BlobStore[] = [];
const dirs: Array<{ remove: () => void }> = [];
const savedEnv = { ...process.env };

describe.runIf(haveRedis())('bucket index', () => {
  beforeAll(async () => {
    [redis, server] = await Promise.all([startRedis(), startS3Server()]);
    // Every S3 request of the stores goes through the proxy, which lists them: "no HEAD" is then checkable.
    proxy = await startTcpProxy(server.port);
    Object.assign(process.env, server.env(proxy.url));
    inspect = new Redis(redis.port, '127.0.0.1');
    inspect.on('error', () => {}); // it reconnects after the outage test; its commands would fail, none is sent then
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close?.()));
  });
  afterAll(async () => {
    inspect?.disconnect();
    await proxy?.close();
    await Promise.all([redis?.close(), server?.destroy()]);
    for (const dir of dirs) dir.remove();
    process.env = savedEnv;
  });

  /** A frontend's store as `larder executor --store tiered(disk:…,s3://…) --bucket-index redis://…` opens it. */
  const frontend = async (prefix: string, ttl = HOUR, rebuildCheckMs = HOUR): Promise<BlobStore> => {
    const dir = tempDir();
    dirs.push(dir);
    const spec = `tiered(disk:${dir.path}@1GiB,s3://${S3_BUCKET}/${prefix}?path-style=1)`;
    const store = await openStore(parseStoreSpec(spec, { maxBytes: 2 ** 30, env: process.env }), {
      bucketIndex: bucketIndexOptions({ bucketIndex: redis.url, bucketIndexTtlMs: ttl }, MEMORY_QUEUE, {
        rebuildCheckMs,
      }),
    });
    opened.push(store);
    // The first frontend of a prefix builds its index from a listing: wait for that, so it races nothing below.
    await built(prefix);
    return store;
  };
  const marker = (prefix: string) => `larder:bucket-index:${S3_BUCKET}/${prefix}:#built`;
  /** Waits (bounded) for the index of `prefix` to be marked built. */
  const built = async (prefix: string) => {
    for (let i = 0; i < 400; i++) {
      if ((await inspect.get(marker(prefix))) === 'built') return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`the index of ${prefix} was not built within 10 s`);
  };
  const blob = () => {
    const data = randomBytes(64);
    return { data, key: blobKey('', 'cas', sha256(data)) };
  };
  const objectKey = (prefix: string, key: BlobKey) => `${prefix}/_default/cas/${key.hash}`;
  const heads = (from: number) => proxy.requests.slice(from).filter((line) => line.startsWith('HEAD '));
  /** The bucket under `prefix`, reached through the request-listing proxy. */
  const bucketAt = (prefix: string) =>
    new S3Store({
      bucket: S3_BUCKET,
      prefix,
      region: 'us-east-1',
      endpoint: proxy.url,
      forcePathStyle: true,
      timeoutMs: 10_000,
    });
  /** The Redis index under `scope`. */
  const indexOf = (scope: string) =>
    RedisBucketIndex.open({ connection: { host: '127.0.0.1', port: redis.port }, scope });

  describeStoreContract('indexed(s3)', {
    open: async () => {
      const prefix = `contract-${randomUUID()}`;
      return new IndexedStore({ bucket: bucketAt(prefix), index: await indexOf(prefix), ttlMs: HOUR });
    },
    bounded: false,
  });

  it('answers a batch from the index: a blob one frontend uploaded is present at another, with no request to the bucket', async () => {
    const prefix = `shared-${randomUUID()}`;
    const [a, b] = [await frontend(prefix), await frontend(prefix)];
    const stored = blob();
    const absent = blob();
    await a.put(stored.key, stored.data, stored.data.length);
    const before = proxy.requests.length;
    expect(await statMany(b, [stored.key, absent.key], 32)).toEqual([64, null]);
    expect(heads(before)).toEqual([]);
  });

  it('reports a blob deleted from the bucket behind its back missing once a read found it gone', async () => {
    const prefix = `deleted-${randomUUID()}`;
    const [a, b, c] = [await frontend(prefix), await frontend(prefix), await frontend(prefix)];
    const gone = blob();
    await a.put(gone.key, gone.data, gone.data.length);
    expect(await statMany(b, [gone.key], 32)).toEqual([64]);
    await server.client().send(new DeleteObjectCommand({ Bucket: S3_BUCKET, Key: objectKey(prefix, gone.key) }));
    // The read that finds it gone is the event: b drops the entry from its memory and from the shared index.
    expect(await b.get(gone.key)).toBeNull();
    expect(await statMany(b, [gone.key], 32)).toEqual([null]);
    expect(await statMany(c, [gone.key], 32)).toEqual([null]);
    // The client then uploads it again, and it is in the bucket and present everywhere once more.
    await c.put(gone.key, gone.data, gone.data.length);
    expect(await server.list(`${prefix}/`)).toEqual([{ key: objectKey(prefix, gone.key), size: 64 }]);
    expect(await statMany(b, [gone.key], 32)).toEqual([64]);
  });

  it('reports a blob whose entry was lost missing, and the re-upload writes it to the bucket and the index again', async () => {
    const prefix = `lost-${randomUUID()}`;
    const a = await frontend(prefix);
    const kept = blob();
    await a.put(kept.key, kept.data, kept.data.length);
    const [name] = await inspect.keys(`*${kept.key.hash}`);
    await inspect.del(name!);
    const b = await frontend(prefix);
    expect(await statMany(b, [kept.key], 32)).toEqual([null]);
    const before = proxy.requests.length;
    await b.put(kept.key, kept.data, kept.data.length);
    // Written again (PutObject), not skipped on a HeadObject: the bucket dates it afresh, the index has it again.
    expect(proxy.requests.slice(before).filter((line) => line.startsWith('PUT '))).toHaveLength(1);
    const c = await frontend(prefix);
    expect(await statMany(c, [kept.key], 32)).toEqual([64]);
  });

  it('fills the index from a listing of the bucket when it was never built, and again when it is flushed', async () => {
    const prefix = `rebuilt-${randomUUID()}`;
    // In the bucket before any frontend with an index ran (written by an older larder, say).
    const earlier = [blob(), blob()];
    for (const { key, data } of earlier)
      await server.client().send(new PutObjectCommand({ Bucket: S3_BUCKET, Key: objectKey(prefix, key), Body: data }));
    const a = await frontend(prefix, HOUR, 100);
    const before = proxy.requests.length;
    expect(
      await statMany(
        a,
        earlier.map((b) => b.key),
        32,
      ),
    ).toEqual([64, 64]);
    expect(heads(before)).toEqual([]);
    await inspect.flushall();
    // The running frontend sees the index gone at its next check and lists the bucket again.
    await built(prefix);
    const fresh = new IndexedStore({
      bucket: bucketAt(prefix),
      index: await indexOf(`${S3_BUCKET}/${prefix}`),
      ttlMs: HOUR,
    });
    opened.push(fresh);
    expect(await fresh.statMany(earlier.map((b) => b.key))).toEqual([64, 64]);
  });

  it('dates entries by the upload, so Redis drops each within the TTL of the object being written', async () => {
    const prefix = `ttl-${randomUUID()}`;
    const a = await frontend(prefix, 60_000);
    const fresh = blob();
    await a.put(fresh.key, fresh.data, fresh.data.length);
    const [name] = await inspect.keys(`*${fresh.key.hash}`);
    const pttl = await inspect.pttl(name!);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
  });

  it('vouches for a blob found by HeadObject only while it is younger than the TTL (a lifecycle rule may be due)', async () => {
    const prefix = `aged-${randomUUID()}`;
    // Written to the bucket by something else (an older larder, a copy); larder has never seen it.
    const old = blob();
    await server
      .client()
      .send(new PutObjectCommand({ Bucket: S3_BUCKET, Key: objectKey(prefix, old.key), Body: old.data }));
    const index = () => indexOf(prefix);
    const bucket = () => bucketAt(prefix);
    // A clock two TTLs ahead: the object is older than the TTL, so stat tells the truth but nothing is recorded.
    const later = new IndexedStore({
      bucket: bucket(),
      index: await index(),
      ttlMs: HOUR,
      now: () => Date.now() + 2 * HOUR,
    });
    const now = new IndexedStore({ bucket: bucket(), index: await index(), ttlMs: HOUR });
    opened.push(later, now);
    expect(await later.stat(old.key)).toBe(64);
    expect(await now.statMany([old.key])).toEqual([null]);
    // At the real time it is young: the HeadObject's answer is recorded for every frontend's batches.
    expect(await now.stat(old.key)).toBe(64);
    const fresh = new IndexedStore({ bucket: bucket(), index: await index(), ttlMs: HOUR });
    opened.push(fresh);
    expect(await fresh.statMany([old.key])).toEqual([64]);
    // And the entry it wrote is not believed by a clock past its time.
    expect(await later.statMany([old.key])).toEqual([null]);
  });

  it('answers missing, not an error, while Redis is down, and uploads still reach the bucket', async () => {
    const prefix = `down-${randomUUID()}`;
    const a = await frontend(prefix);
    const stored = blob();
    await redis.stop();
    try {
      const b = await frontend(prefix).catch((err: Error) => err);
      expect(b).toBeInstanceOf(Error); // a frontend that cannot reach its index does not start
      expect(await statMany(a, [stored.key], 32)).toEqual([null]);
      await a.put(stored.key, stored.data, stored.data.length);
      expect(await server.list(`${prefix}/`)).toEqual([{ key: objectKey(prefix, stored.key), size: 64 }]);
    } finally {
      await redis.restart();
    }
  });
});
