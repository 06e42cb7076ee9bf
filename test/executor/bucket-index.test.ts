// Two `larder executor` frontends on tiered(disk, s3) sharing one bucket and one Redis, as hosts behind a load
// balancer: what one stores, the other's FindMissingBlobs knows from the bucket index, without a request to S3.
// And --bucket-index's checks at start.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExecutorConfig } from '../../executor/config/executor-options.ts';
import { haveRedis, startRedis, type TestRedis } from '../helpers/redis.ts';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { digestOf, reachableTempDir, startTestServer, type TestServer } from './helpers.ts';

describe.runIf(haveRedis())('--bucket-index', () => {
  let redis: TestRedis;
  let server: S3Server;
  let proxy: TcpProxy;
  const frontends: TestServer[] = [];
  const dirs: string[] = [];
  const savedEnv = { ...process.env };
  const prefix = `fleet-${randomUUID()}`;

  /** A frontend of the fleet: its own disk tier, the shared bucket (through the request-listing proxy) and Redis. */
  const frontend = async () => {
    const dir = reachableTempDir('larder-bucket-index-');
    dirs.push(dir);
    const store = `tiered(disk:${dir}/store,s3://${S3_BUCKET}/${prefix}?endpoint=${proxy.url}&path-style=1)`;
    const started = await startTestServer({ args: ['--store', store, '--bucket-index', redis.url, '--workers', '0'] });
    frontends.push(started);
    return started;
  };

  beforeAll(async () => {
    [redis, server] = await Promise.all([startRedis(), startS3Server()]);
    proxy = await startTcpProxy(server.port);
    // Credentials and region, as a frontend's environment would carry them (the endpoint is in the spec).
    Object.assign(process.env, server.env(proxy.url));
  });
  afterAll(async () => {
    await Promise.all(frontends.map((f) => f.stop()));
    await proxy?.close();
    await Promise.all([redis?.close(), server?.destroy()]);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    process.env = savedEnv;
  });

  it('answers FindMissingBlobs at one frontend for blobs uploaded at another, from the index, asking S3 nothing', async () => {
    const [a, b] = [await frontend(), await frontend()];
    const blobs = ['one', 'two', 'three'].map((text) => Buffer.from(`${text} ${randomUUID()}`));
    const update = await a.clients.cas.batchUpdateBlobs({
      requests: blobs.map((data) => ({ digest: digestOf(data), data })),
    });
    expect(update.responses.map((r) => r.status?.code)).toEqual([0, 0, 0]);
    const absent = [digestOf(`absent ${randomUUID()}`), digestOf(`absent ${randomUUID()}`)];
    const before = proxy.requests.length;
    const reply = await b.clients.cas.findMissingBlobs({ blobDigests: [...blobs.map(digestOf), ...absent] });
    expect(reply.missingBlobDigests.map((d) => d.hash)).toEqual(absent.map((d) => d.hash));
    // A frontend's background listing (a rebuild of the index) may pass by; no blob is asked after.
    expect(proxy.requests.slice(before).filter((line) => !line.startsWith('GET /larder-test?list-type=2'))).toEqual([]);
  });

  it('is checked at start: it needs an s3:// store, and `queue` needs a Redis queue', () => {
    expect(() => parseExecutorConfig(['--store', 'disk:/tmp/x', '--bucket-index', 'redis://127.0.0.1:1'], {})).toThrow(
      /--store has no s3:\/\/ store/,
    );
    expect(() => parseExecutorConfig(['--store', 's3://bucket/p', '--bucket-index', 'queue'], {})).toThrow(
      /needs a Redis queue/,
    );
    expect(() => parseExecutorConfig(['--store', 's3://bucket/p', '--bucket-index', 'yes'], {})).toThrow(
      /must be off, queue or a redis:\/\//,
    );
    const config = parseExecutorConfig(['--store', 'tiered(memory,s3://bucket/p)'], {
      LARDER_BUCKET_INDEX: 'queue',
      LARDER_QUEUE: 'redis://127.0.0.1:6379',
      LARDER_BUCKET_INDEX_TTL: '2h',
    });
    expect(config.bucketIndex).toEqual({ bucketIndex: 'queue', bucketIndexTtlMs: 7_200_000 });
  });
});
