/**
 * FindMissingBlobs across hosts: frontends on tiered(disk, s3) sharing one bucket, the bucket behind a proxy that
 * holds every chunk 10 ms each way (so each S3 request costs at least 20 ms, as a real bucket does from another
 * host), with and without the bucket index in Redis (--bucket-index). The digests asked for are never in the
 * asking frontend's disk tier: "present" ones were uploaded through another frontend, "absent" ones never were.
 *
 *   import { runFindMissingBench, formatFindMissingRows } from './find-missing.ts';
 *   console.log(formatFindMissingRows(await runFindMissingBench()));
 *
 * Or on its own: `npx tsx bench/find-missing.ts` (runs dist/: `npm run build` first). Without the index each
 * digest is a HeadObject (32 in flight per call); with it, the first ask of a digest is a Redis lookup and a
 * repeated ask is answered from the frontend's memory. Everything runs on one machine, so the figures are upper
 * bounds for the index rows and lower bounds for the S3 ones (a real bucket is further away than 20 ms, not nearer).
 */
import { createHash, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { createClient } from '../executor/grpc/client.ts';
import { ContentAddressableStorage } from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../test/executor/helpers.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { S3_BUCKET, startS3Server } from '../test/helpers/s3-server.ts';
import { startTcpProxy } from '../test/helpers/tcp-proxy.ts';
import { cpuSeconds } from './proc.ts';

export interface FindMissingRow {
  digests: number;
  answer: 'absent' | 'present';
  /** ms for one call, each digest a HeadObject. */
  withoutIndexMs: number;
  /** ms for the first call with these digests at this frontend: one Redis round trip. */
  indexFirstMs: number;
  /** ms, median of repeated calls: answered from the frontend's memory (present) or Redis again (absent). */
  indexAgainMs: number;
  /** The indexed frontend's CPU ms for the first ask: what a busy machine stretches the wall time from. */
  indexFirstCpuMs: number;
}

export interface FindMissingFigures {
  rows: FindMissingRow[];
  /** Redis memory per indexed blob, bytes (used_memory before and after the uploads, over their count). */
  redisBytesPerEntry: number;
  /** The proxy's delay each way, ms. */
  delayMs: number;
}

const SIZES = [100, 1_000, 10_000];
const DELAY_MS = 10;
const REPEATS = 3;

export async function runFindMissingBench(options: { sizes?: number[] } = {}): Promise<FindMissingFigures> {
  const sizes = options.sizes ?? SIZES;
  const [redis, s3] = await Promise.all([startRedis(), startS3Server()]);
  const proxy = await startTcpProxy(s3.port);
  const prefix = `bench-find-missing-${randomUUID()}`;
  const dirs: string[] = [];
  const frontends: ExecutorProcess[] = [];
  const start = async (index: boolean) => {
    const dir = reachableTempDir('larder-bench-find-missing-');
    dirs.push(dir);
    const store = `tiered(disk:${join(dir, 'store')}@4GiB,s3://${S3_BUCKET}/${prefix}?path-style=1)`;
    const args = ['--store', store, '--workers', '0', ...(index ? ['--bucket-index', redis.url] : [])];
    const frontend = await startExecutorProcess(args, s3.env(proxy.url));
    frontends.push(frontend);
    return { cas: createClient(ContentAddressableStorage, frontend.url.replace('grpc://', '')), pid: frontend.pid };
  };
  const inspect = new Redis(redis.port, '127.0.0.1');
  try {
    const [writer, reader, plain] = [(await start(true)).cas, await start(true), (await start(false)).cas];
    // Uploads without the delay: they only set the scene. Each size gets blobs of its own, so that every
    // "first ask" at the reader really is its first.
    const present = sizes.map((n) => Array.from({ length: n }, () => Buffer.from(`present ${randomUUID()}`)));
    const memoryBefore = await usedMemory(inspect);
    for (const blobs of present) {
      for (let i = 0; i < blobs.length; i += 1000) {
        const requests = blobs.slice(i, i + 1000).map((data) => ({ digest: digestOf(data), data }));
        const reply = await writer.batchUpdateBlobs({ requests });
        if (reply.responses.some((r) => r.status?.code !== 0)) throw new Error('bench: an upload failed');
      }
    }
    const uploaded = present.reduce((sum, blobs) => sum + blobs.length, 0);
    const redisBytesPerEntry = ((await usedMemory(inspect)) - memoryBefore) / uploaded;
    proxy.delayMs = DELAY_MS;

    const rows: FindMissingRow[] = [];
    for (const [i, n] of sizes.entries()) {
      const cases: Array<[FindMissingRow['answer'], ReturnType<typeof digestOf>[]]> = [
        ['absent', Array.from({ length: n }, () => digestOf(Buffer.from(`absent ${randomUUID()}`)))],
        ['present', present[i]!.map(digestOf)],
      ];
      for (const [answer, digests] of cases) {
        const expected = answer === 'absent' ? n : 0;
        const ask = (client: typeof writer) => async () => {
          const reply = await client.findMissingBlobs({ blobDigests: digests });
          if (reply.missingBlobDigests.length !== expected)
            throw new Error(`bench: ${reply.missingBlobDigests.length} of ${n} ${answer} digests reported missing`);
        };
        const withoutIndexMs = await timed(ask(plain));
        const cpuBefore = cpuSeconds(reader.pid);
        const indexFirstMs = await timed(ask(reader.cas));
        const indexFirstCpuMs = (cpuSeconds(reader.pid) - cpuBefore) * 1000;
        const again: number[] = [];
        for (let r = 0; r < REPEATS; r++) again.push(await timed(ask(reader.cas)));
        rows.push({ digests: n, answer, withoutIndexMs, indexFirstMs, indexAgainMs: median(again), indexFirstCpuMs });
      }
    }
    return { rows, redisBytesPerEntry, delayMs: DELAY_MS };
  } finally {
    inspect.disconnect();
    await Promise.all(frontends.map((f) => f.stop()));
    await proxy.close();
    await Promise.all([redis.close(), s3.destroy()]);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

export function formatFindMissingRows(figures: FindMissingFigures): string {
  const header = [
    'digests',
    'answer',
    'no index (HeadObject each)',
    'index, first ask',
    'its frontend CPU',
    'index, asked again',
  ];
  const ms = (value: number) => (value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`);
  const cells = figures.rows.map((r) => [
    r.digests.toLocaleString('en'),
    r.answer,
    ms(r.withoutIndexMs),
    ms(r.indexFirstMs),
    ms(r.indexFirstCpuMs),
    ms(r.indexAgainMs),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    `| ${c.map((v, i) => (i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...cells.map(line),
    `bucket ${figures.delayMs} ms each way behind a proxy; Redis holds ${Math.round(figures.redisBytesPerEntry)} bytes per indexed blob`,
  ].join('\n');
}

function digestOf(data: Uint8Array) {
  return { hash: createHash('sha256').update(data).digest('hex'), sizeBytes: BigInt(data.byteLength) };
}

async function timed(call: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await call();
  return performance.now() - start;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatFindMissingRows(await runFindMissingBench()));
}
