/**
 * Issue 20's benchmark: FetchBlob answered from the cache, against FindMissingBlobs of the same digests, side by
 * side in one run on one `larder executor` process. A cached FetchBlob has to find out that the blob is still in
 * the CAS, which is what FindMissingBlobs does; the ratio says what the rest of FetchBlob costs on top.
 *
 *   1. A loopback HTTP origin serves one 50 MiB blob and 1,000 blobs of 1 KiB; the executor is started with
 *      `--fetch-allow` naming it, and each blob is fetched once (untimed) so it is cached.
 *   2. Measured, FetchBlob and FindMissingBlobs (one digest per call) at concurrency 1 and 8 in interleaved blocks
 *      of 100 calls (A-B-B-A, see `interleaved`): the 50 MiB blob over and over, and each small blob in turn. Every
 *      FetchBlob must name the expected digest and every FindMissingBlobs must report nothing missing.
 *      The measured calls go out as bytes encoded once per blob, and each reply must equal, byte for byte, the
 *      reply the untimed pass decoded and checked for that blob. So the client costs the same for either kind
 *      and the ratio is the server's: through the generated client, FindMissingBlobs is encoded by the
 *      hand-written digest-list encoder and FetchBlob by protobuf-es, which cost the client tens of µs more per
 *      call on a 2-core machine where client and server share the cores.
 *   3. The origin must see no request during the measured part; if it does, the bench fails.
 *
 * Requests carry `checksum.sri` as Bazel sends it for an `http_file` with a sha256; the cache answers by URI first.
 *
 *   import { runAssetBench, formatAssetRows } from './asset.ts';
 *   console.log(formatAssetRows(await runAssetBench({ quick: true })));
 *
 * Or on its own: `npx tsx bench/asset.ts [--quick]` (BENCH_PROFILE=1 runs the executor under --cpu-prof and
 * prints its top functions).
 */
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CLIENT_CHANNEL_OPTIONS, createClient } from '../executor/grpc/client.ts';
import { mapLimit } from '../shared/map-limit.ts';
import {
  Fetch,
  FetchBlobRequestSchema,
  FetchBlobResponseSchema,
} from '../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import {
  ContentAddressableStorage,
  FindMissingBlobsRequestSchema,
  FindMissingBlobsResponseSchema,
} from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { reachableTempDir } from '../test/executor/helpers.ts';
import { startBenchExecutor } from './execution.ts';
import {
  addTally,
  callsPerSecond,
  emptyTally,
  formatSpread,
  interleave,
  measure,
  percentile,
  spread,
  type Spread,
  type Tally,
} from './interleave.ts';
import { printProfile } from './profile-summary.ts';
import { formatTable, num } from './table.ts';

export interface AssetBenchOptions {
  /** Fewer calls and one round (default false). */
  quick?: boolean;
  /** Calls of the 50 MiB blob per round (default 2,000; 400 quick); a multiple of 200 (one A-B-B-A quad). */
  bigCalls?: number;
  /** Small blobs (default 1,000; a multiple of 200); each is asked for once per round. */
  smallBlobs?: number;
  /** Passes over the calls of every row, interleaved in A-B-B-A blocks; a cell adds up all of them (default 4; 1 quick). */
  rounds?: number;
  /** Run the executor under --cpu-prof, its profile written here and summarised when it stops. */
  profileDir?: string | null;
}

export interface AssetBenchRow {
  blobs: string;
  concurrency: number;
  /** Calls of each kind measured (every round's). */
  calls: number;
  fetch: Measured;
  findMissing: Measured;
  /** FetchBlob calls/s ÷ FindMissingBlobs calls/s within each A-B-B-A quad of blocks: how far one quad strays. */
  quadRatios: Spread;
}

interface Measured {
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** The executor's CPU time per call (user + system, all threads), in µs. */
  cpuMicros: number;
  /** The bench process's own CPU per call (the gRPC client's encoding and decoding), in µs. */
  clientCpuMicros: number;
}

const MiB = 1024 * 1024;
const BIG_BYTES = 50 * MiB;
const SMALL_BYTES = 1024;
const CONCURRENCIES = [1, 8];

interface Blob {
  path: string;
  data: Buffer;
  hash: string;
}

export async function runAssetBench(options: AssetBenchOptions = {}): Promise<AssetBenchRow[]> {
  const quick = options.quick ?? false;
  const bigCalls = options.bigCalls ?? (quick ? 400 : 2000);
  const smallCount = options.smallBlobs ?? 1000;
  const rounds = options.rounds ?? (quick ? 1 : 4);
  const profileDir = options.profileDir ?? null;
  if (profileDir !== null) await mkdir(profileDir, { recursive: true });

  const big = blob('/big', randomBytes(BIG_BYTES));
  const small = Array.from({ length: smallCount }, (_, i) => blob(`/small/${i}`, randomBytes(SMALL_BYTES)));
  const origin = await startOrigin([big, ...small]);
  const dir = reachableTempDir('larder-bench-asset-');
  const nodeFlags = profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const executor = await startBenchExecutor(dir, nodeFlags, ['--fetch-allow', origin.host]);
  const fetch = createClient(Fetch, executor.address);
  const cas = createClient(ContentAddressableStorage, executor.address);
  const raw = new grpc.Client(executor.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    const fetchRequest = (b: Blob) => ({
      uris: [`${origin.url}${b.path}`],
      qualifiers: [{ name: 'checksum.sri', value: `sha256-${Buffer.from(b.hash, 'hex').toString('base64')}` }],
    });
    const findMissingRequest = (b: Blob) => ({ blobDigests: [{ hash: b.hash, sizeBytes: BigInt(b.data.byteLength) }] });
    const checkFetched = (b: Blob, digest: { hash: string; sizeBytes: bigint } | undefined) => {
      if (digest?.hash !== b.hash || digest.sizeBytes !== BigInt(b.data.byteLength))
        throw new Error(`FetchBlob ${b.path} answered ${JSON.stringify(digest)}, not ${b.hash}`);
    };
    const checkNoneMissing = (b: Blob, missing: readonly unknown[]) => {
      if (missing.length !== 0) throw new Error(`FindMissingBlobs reports ${b.path} (${b.hash}) missing`);
    };

    // Warm, through the generated client: every blob downloaded once, so the measured calls are all cache answers.
    const fetchTyped = async (b: Blob) => checkFetched(b, (await fetch.fetchBlob(fetchRequest(b))).blobDigest);
    await fetchTyped(big);
    await mapLimit(small, 8, fetchTyped);
    const expected = 1 + small.length;
    if (origin.requests() !== expected)
      throw new Error(`warming sent ${origin.requests()} requests to the origin, not ${expected}`);
    checkNoneMissing(big, (await cas.findMissingBlobs(findMissingRequest(big))).missingBlobDigests);

    const fetchBlob = preEncoded(
      raw,
      `/${Fetch.typeName}/FetchBlob`,
      FetchBlobRequestSchema,
      fetchRequest,
      (b, reply) => checkFetched(b, fromBinary(FetchBlobResponseSchema, reply).blobDigest),
    );
    const findMissing = preEncoded(
      raw,
      `/${ContentAddressableStorage.typeName}/FindMissingBlobs`,
      FindMissingBlobsRequestSchema,
      findMissingRequest,
      (b, reply) => checkNoneMissing(b, fromBinary(FindMissingBlobsResponseSchema, reply).missingBlobDigests),
    );
    // Untimed: every blob's first reply of each kind decoded and checked; then a pass at each concurrency (JIT).
    for (const call of [fetchBlob, findMissing]) await mapLimit([big, ...small], 8, call);
    for (const concurrency of CONCURRENCIES) {
      await mapLimit(small.slice(0, 100), concurrency, fetchBlob);
      await mapLimit(small.slice(0, 100), concurrency, findMissing);
    }

    const workloads = [
      { blobs: `50 MiB blob, ${bigCalls} calls`, items: Array.from({ length: bigCalls }, () => big) },
      { blobs: `${smallCount} × 1 KiB blobs`, items: small },
    ];
    const rows: AssetBenchRow[] = [];
    for (const { blobs, items } of workloads) {
      for (const concurrency of CONCURRENCIES) {
        const row = await interleaved(executor.pid, items, concurrency, rounds, { fetch: fetchBlob, findMissing });
        rows.push({ blobs, ...row });
        process.stderr.write(
          `  asset ${blobs} c=${concurrency}: FetchBlob ${num(row.fetch.callsPerSecond)}/s, FindMissingBlobs ${num(row.findMissing.callsPerSecond)}/s\n`,
        );
      }
    }
    if (origin.requests() !== expected)
      throw new Error(
        `the origin saw ${origin.requests() - expected} request(s) during the measured part: FetchBlob did not answer from the cache`,
      );
    return rows;
  } finally {
    fetch.close();
    cas.close();
    raw.close();
    await executor.stop();
    await origin.stop();
    if (profileDir !== null) printProfile(profileDir, executor.pid);
    await rm(dir, { recursive: true, force: true });
  }
}

export function formatAssetRows(rows: AssetBenchRow[]): string {
  const header = [
    'cached blobs',
    'conc',
    'FetchBlob calls/s',
    'FindMissing calls/s',
    'calls/s ÷',
    '÷ per quad: median (low–high)',
    'FetchBlob p50/p99 ms',
    'FindMissing p50/p99 ms',
    'FetchBlob CPU µs/call',
    'FindMissing CPU µs/call',
    'CPU ×',
    'client CPU µs/call F / M',
  ];
  const body = rows.map((r) => [
    r.blobs,
    r.concurrency,
    num(r.fetch.callsPerSecond),
    num(r.findMissing.callsPerSecond),
    `${(r.fetch.callsPerSecond / r.findMissing.callsPerSecond).toFixed(2)}`,
    formatSpread(r.quadRatios),
    `${num(r.fetch.p50Ms)} / ${num(r.fetch.p99Ms)}`,
    `${num(r.findMissing.p50Ms)} / ${num(r.findMissing.p99Ms)}`,
    num(r.fetch.cpuMicros),
    num(r.findMissing.cpuMicros),
    `${(r.fetch.cpuMicros / r.findMissing.cpuMicros).toFixed(2)}`,
    `${num(r.fetch.clientCpuMicros)} / ${num(r.findMissing.clientCpuMicros)}`,
  ]);
  return [
    formatTable(header, body),
    '',
    `Both kinds ran against the same executor and the same digests, one digest per call, in interleaved blocks of ${BLOCK_CALLS} calls`,
    "(F M M F …), sent as bytes encoded once per blob; every reply equalled that blob's first reply, which was decoded and checked.",
    'calls/s ÷: FetchBlob calls/s over FindMissingBlobs calls/s over all blocks (1 or more meets the issue); per quad: the same',
    'ratio within each F-M-M-F quad of blocks, whose spread is the noise. CPU ×: FetchBlob CPU per call over FindMissingBlobs.',
    "The origin saw no request while these were measured (checked). Executor CPU: its threads' schedstat, in ns.",
  ].join('\n');
}

/**
 * A unary call sent as bytes encoded once per blob. The first reply for a blob is handed to `check` (which decodes
 * and judges it); every later one must equal it byte for byte, so each measured call is still checked in full.
 */
function preEncoded<I extends DescMessage>(
  client: grpc.Client,
  path: string,
  schema: I,
  request: (b: Blob) => MessageInitShape<I>,
  check: (b: Blob, reply: Buffer) => void,
): (b: Blob) => Promise<void> {
  const requests = new Map<Blob, Buffer>();
  const replies = new Map<Blob, Buffer>();
  return async (b) => {
    let bytes = requests.get(b);
    if (bytes === undefined) {
      bytes = Buffer.from(toBinary(schema, create(schema, request(b))));
      requests.set(b, bytes);
    }
    const reply = await unaryBytes(client, path, bytes);
    const first = replies.get(b);
    if (first === undefined) {
      check(b, reply);
      replies.set(b, reply);
    } else if (!reply.equals(first)) throw new Error(`${path} answered ${b.path} unlike its first, checked reply`);
  };
}

function unaryBytes(client: grpc.Client, path: string, request: Buffer): Promise<Buffer> {
  const same = (bytes: Buffer) => bytes;
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, same, same, request, (err, reply) => (err ? reject(err) : resolve(reply!)));
  });
}

function blob(path: string, data: Buffer): Blob {
  return { path, data, hash: createHash('sha256').update(data).digest('hex') };
}

/** Calls in one block: big enough that its CPU and time are well above the clocks' resolution, small enough to interleave finely. */
const BLOCK_CALLS = 100;

type Kind = 'fetch' | 'findMissing';

/**
 * Both kinds over the same items, `rounds` passes, each pass cut into blocks of BLOCK_CALLS calls in A-B-B-A order
 * (interleave.ts): F M, M F, F M, … Each kind's figures are its totals over all its blocks; each quad's own ratio
 * shows the noise.
 */
async function interleaved(
  pid: number,
  items: Blob[],
  concurrency: number,
  rounds: number,
  calls: Record<Kind, (b: Blob) => Promise<void>>,
): Promise<Omit<AssetBenchRow, 'blobs'>> {
  const quads = items.length / (2 * BLOCK_CALLS);
  if (!Number.isInteger(quads) || quads === 0)
    throw new Error(`${items.length} calls do not make whole A-B-B-A quads of ${BLOCK_CALLS}-call blocks`);
  const totals: Record<Kind, Tally> = { fetch: emptyTally(), findMissing: emptyTally() };
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const pass = await interleave(['fetch', 'findMissing'] as const, quads, (kind, block, tally) => {
      const slice = items.slice(block * BLOCK_CALLS, (block + 1) * BLOCK_CALLS);
      return measure(pid, tally, slice.length, () =>
        mapLimit(slice, concurrency, async (b) => {
          const t = performance.now();
          await calls[kind](b);
          tally.latencies.push(performance.now() - t);
        }),
      );
    });
    for (const quad of pass.quads) ratios.push(callsPerSecond(quad.fetch) / callsPerSecond(quad.findMissing));
    addTally(totals.fetch, pass.totals.fetch);
    addTally(totals.findMissing, pass.totals.findMissing);
  }
  return {
    concurrency,
    calls: totals.fetch.calls,
    fetch: measured(totals.fetch),
    findMissing: measured(totals.findMissing),
    quadRatios: spread(ratios),
  };
}

function measured(tally: Tally): Measured {
  const latencies = [...tally.latencies].sort((a, b) => a - b);
  return {
    callsPerSecond: callsPerSecond(tally),
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    cpuMicros: tally.cpuNs / 1000 / tally.calls,
    clientCpuMicros: tally.clientCpuUs / tally.calls,
  };
}

/** The stand-in for the internet: serves the blobs by path and counts every request it gets. */
async function startOrigin(
  blobs: Blob[],
): Promise<{ url: string; host: string; requests(): number; stop(): Promise<void> }> {
  const byPath = new Map(blobs.map((b) => [b.path, b.data]));
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    const data = byPath.get(new URL(req.url ?? '/', 'http://x').pathname);
    if (data === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-length': data.byteLength }).end(data);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests: () => requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const profileDir =
    process.env.BENCH_PROFILE === '1'
      ? process.env.BENCH_PROFILE_DIR || join(tmpdir(), `larder-bench-profiles-${Date.now()}`)
      : null;
  try {
    const rows = await runAssetBench({ quick: process.argv.includes('--quick'), profileDir });
    console.log(`Remote Asset API: cached FetchBlob against FindMissingBlobs\n${formatAssetRows(rows)}`);
  } catch (err) {
    console.error((err as Error)?.stack ?? String(err));
    process.exitCode = 1;
  }
}
