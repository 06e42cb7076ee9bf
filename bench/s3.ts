/**
 * S3 figures for `larder edge`: GET hits served by a memory tier vs fetched from S3 on every request, and uploads
 * that go through to S3 (alone, and written through a memory tier). S3 is s3rver on loopback (test/helpers/
 * s3-server.ts), so the S3 rows measure larder's S3 path plus a local, zero-latency S3: real S3 adds its round
 * trip (tens of ms) to every S3 row and none to the memory-tier row, which is the point of the tier.
 *
 *   import { runS3Bench, formatS3Rows } from './s3.ts';
 *   const rows = await runS3Bench(tempDir);
 *   console.log(formatS3Rows(rows));
 *
 * Or on its own: `npx tsx bench/s3.ts`. Load comes from this process (keep-alive, one request in flight per
 * connection); the edges and s3rver are their own processes, all on one machine, so treat the figures as
 * relative: memory tier vs S3, not absolute capacity.
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type EdgeProcess, startEdgeProcess } from '../test/helpers/edge-process.ts';
import { S3_BUCKET, startS3Server } from '../test/helpers/s3-server.ts';

export interface S3BenchRow {
  scenario: string;
  /** Blob size in bytes. */
  size: number;
  concurrency: number;
  reqPerSec: number;
  /** Decimal megabytes (10^6 bytes) of blob bodies per second. */
  mbPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface S3BenchOptions {
  sizes?: number[];
  concurrency?: number[];
  /** Measured seconds per row (after half a second of warm-up). */
  seconds?: number;
  /** Distinct blobs per size that GET hits cycle over. */
  blobs?: number;
}

const KiB = 1024;

export async function runS3Bench(tempDir: string, options: S3BenchOptions = {}): Promise<S3BenchRow[]> {
  const o = { sizes: [64 * KiB, 1024 * KiB], concurrency: [16], seconds: 3, blobs: 64, ...options };
  const s3 = await startS3Server({ dir: join(tempDir, 's3rver') });
  const edges: EdgeProcess[] = [];
  try {
    const start = async (store: string) => {
      const edge = await startEdgeProcess({
        runtime: 'node',
        args: ['--store', store, '--max-blob-size', '1GiB'],
        env: s3.env(),
      });
      edges.push(edge);
      return edge.url;
    };
    const plain = await start(`s3://${S3_BUCKET}/bench-s3`);
    const tiered = await start(`tiered(memory:1GiB,s3://${S3_BUCKET}/bench-tiered)`);
    const rows: S3BenchRow[] = [];
    for (const size of o.sizes) {
      const blobs = Array.from({ length: o.blobs }, () => randomBytes(size)).map((body) => ({
        body,
        hash: sha256(body),
      }));
      // Written through the tiered edge, so its memory tier holds them; the plain edge has only S3.
      await populate(plain, blobs);
      await populate(tiered, blobs);
      const scenarios: Array<[string, string, () => Request]> = [
        ['GET hit, memory tier in front of S3', tiered, cycle(blobs)],
        ['GET hit, straight from S3', plain, cycle(blobs)],
        ['PUT new, to S3', plain, fresh(size)],
        ['PUT new, through memory tier to S3', tiered, fresh(size)],
      ];
      for (const [scenario, url, next] of scenarios) {
        for (const concurrency of o.concurrency) {
          await load(url, next, concurrency, 0.5);
          const result = await load(url, next, concurrency, o.seconds);
          rows.push({ scenario, size, concurrency, ...result, mbPerSec: (result.reqPerSec * size) / 1e6 });
        }
      }
    }
    return rows;
  } finally {
    await Promise.all(edges.map((edge) => edge.stop()));
    await s3.destroy();
  }
}

export function formatS3Rows(rows: S3BenchRow[]): string {
  const header = ['scenario', 'size', 'conc', 'req/s', 'MB/s', 'p50 ms', 'p99 ms'];
  const cells = rows.map((r) => [
    r.scenario,
    `${r.size / KiB} KiB`,
    String(r.concurrency),
    r.reqPerSec.toFixed(0),
    r.mbPerSec.toFixed(1),
    r.p50Ms.toFixed(1),
    r.p99Ms.toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    `| ${c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...cells.map(line),
  ].join('\n');
}

interface Request {
  method: 'GET' | 'PUT';
  path: string;
  body?: Buffer;
}

/** GETs cycling over a stored blob set. */
function cycle(blobs: Array<{ hash: string }>): () => Request {
  let i = 0;
  return () => ({ method: 'GET', path: `/cas/${blobs[i++ % blobs.length]!.hash}` });
}

/**
 * PUTs of blobs never seen before, cheap to name: one random body whose last 8 bytes are a counter, hashed
 * once up to the counter, so each new blob costs a copy of the hash state rather than hashing the whole body.
 */
function fresh(size: number): () => Request {
  const body = randomBytes(size);
  const prefix: Hash = createHash('sha256').update(body.subarray(0, size - 8));
  let counter = BigInt(Date.now()) << 16n;
  return () => {
    body.writeBigUInt64BE(counter++, size - 8);
    const hash = prefix
      .copy()
      .update(body.subarray(size - 8))
      .digest('hex');
    return { method: 'PUT', path: `/cas/${hash}`, body: Buffer.from(body) };
  };
}

/**
 * `connections` keep-alive connections, each with one request in flight, for `seconds`. Plain node:http rather
 * than autocannon: autocannon accumulates every response body as a string, which for 1 MiB bodies costs more
 * than the request being measured. Bodies are drained unread.
 */
async function load(url: string, next: () => Request, connections: number, seconds: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  const stopAt = performance.now() + seconds * 1000;
  const one = (r: Request) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        `${url}${r.path}`,
        { method: r.method, agent, headers: r.body ? { 'content-length': r.body.length } : {} },
        (res) => {
          res.on('data', () => {});
          res.on('end', () =>
            res.statusCode === 200
              ? resolve()
              : reject(new Error(`bench: ${r.method} ${r.path} answered ${res.statusCode}`)),
          );
          res.on('error', reject);
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error('bench: request timed out after 30 s')));
      req.on('error', reject);
      req.end(r.body);
    });
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (performance.now() < stopAt) {
          const t = performance.now();
          await one(next());
          latencies.push(performance.now() - t);
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { reqPerSec: latencies.length / elapsed, p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function populate(url: string, blobs: Array<{ body: Buffer; hash: string }>): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  try {
    await Promise.all(
      blobs.map(
        (blob) =>
          new Promise<void>((resolve, reject) => {
            const req = http.request(
              `${url}/cas/${blob.hash}`,
              { method: 'PUT', agent, headers: { 'content-length': blob.body.length } },
              (res) => {
                res.resume();
                res.on('end', () =>
                  res.statusCode === 200 ? resolve() : reject(new Error(`bench: populate answered ${res.statusCode}`)),
                );
              },
            );
            req.on('error', reject);
            req.end(blob.body);
          }),
      ),
    );
  } finally {
    agent.destroy();
  }
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = mkdtempSync(join(tmpdir(), 'larder-bench-s3-'));
  try {
    console.log(formatS3Rows(await runS3Bench(dir)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
