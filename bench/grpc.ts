/**
 * gRPC (REAPI) figures for `larder executor` beside bazel-remote: FindMissingBlobs of 10,000 digests, BatchUpdateBlobs
 * and BatchReadBlobs of small blobs, and ByteStream Write and Read of large blobs. Every server runs as its own
 * process on its own fresh disk store, all started at once, and every row runs one call per block, the servers
 * interleaved in A-B-B-A order (interleave.ts; A-B-C-C-B-A for three). Measured one server's whole round after the
 * other's, a 64 MiB Read ranged 201–456 MiB/s within one run, so the ratio said more about the machine than the
 * servers; interleaved, each cell adds up all its blocks and each quad's own ratio shows the noise. All servers are
 * driven by the same client (larder's generated one).
 *
 *   import { runGrpcInterleaved, formatGrpcPair } from './grpc.ts';
 *   const [larder, peer] = await runGrpcInterleaved([{ label: 'larder', server: 'larder' }, { label: 'bazel-remote', server: 'bazel-remote' }]);
 *   console.log(formatGrpcPair(larder, peer, ['larder', 'bazel-remote']));
 *
 * Or on its own: `npx tsx bench/grpc.ts` (BENCH_GRPC_STREAM_MIB=N MiB per ByteStream blob, default 64;
 * BENCH_GRPC_ROUNDS=N passes over every row, default 2; BENCH_GRPC_PEER=0 leaves bazel-remote out; BENCH_BEFORE=path
 * of another larder checkout, built, adds its executor to the interleaving for before/after figures;
 * BENCH_PROFILE_DIR=DIR profiles the executor).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createClient } from '../executor/grpc/client.ts';
import { reachableTempDir } from '../test/executor/helpers.ts';
import { startBazelRemote } from './bazel-remote.ts';
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
  type Tally,
} from './interleave.ts';
import { formatTable, num } from './table.ts';
import { ContentAddressableStorage } from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { ByteStream } from '../shared/proto/gen/google/bytestream/bytestream_pb.ts';

export interface GrpcBenchOptions {
  /** Bytes of each ByteStream blob: one Write or one Read per block (default 64 MiB). */
  streamBytes?: number;
  /** Digests per FindMissingBlobs call (default 10,000). */
  findMissingDigests?: number;
  /** Timed calls per server and pass, two per A-B-B-A quad (rounded up to whole quads): */
  findMissingCalls?: number; // default 20
  batchCalls?: number; // BatchUpdateBlobs and BatchReadBlobs each, default 10
  writeCalls?: number; // ByteStream.Write, default 8
  readCalls?: number; // ByteStream.Read, default 16
  /** Small-blob batches: blob size (default 1 KiB) and blobs per call (default 1,000). */
  batchBlobBytes?: number;
  batchBlobsPerCall?: number;
  /** Passes over every row (default 2); each pass interleaves all servers afresh. */
  passes?: number;
  /** Run larder's executors under --cpu-prof, their profiles written here when they stop (BENCH_PROFILE_DIR). */
  profileDir?: string;
  /** For runGrpcBench: another larder checkout to run the executor from (BENCH_BEFORE), or the Go peer. */
  root?: string;
  server?: 'larder' | 'bazel-remote';
}

/** One server of an interleaved run: larder's executor (from `root`, default this checkout) or bazel-remote. */
export interface GrpcServerSpec {
  label: string;
  server: 'larder' | 'bazel-remote';
  root?: string;
}

export interface GrpcBenchRow {
  scenario: string;
  /** Calls per second over all timed calls. */
  callsPerSecond: number;
  /** Items per second: digests, blobs, or MiB for streams. */
  throughput: number;
  unit: string;
  /** Median call latency in milliseconds (the whole stream for ByteStream). */
  medianMs: number;
  /** The server's CPU time per call in milliseconds (user + system, all its threads, from schedstat). */
  serverCpuMs: number;
  /** The bench's own CPU per call in milliseconds (the client, which shares the machine's two cores). */
  clientCpuMs: number;
  /** Throughput within each A-B-B-A quad, every pass's in order: the same index is the same quad on every server. */
  quadThroughputs: number[];
}

const MiB = 1024 * 1024;

/** A running server with its clients and the state its calls carry from one to the next. */
interface Target {
  label: string;
  pid: number;
  cas: ReturnType<typeof createClient<typeof ContentAddressableStorage>>;
  bytestream: ReturnType<typeof createClient<typeof ByteStream>>;
  /** Batches uploaded so far (BatchReadBlobs reads them back in turn) and how many reads took one. */
  batches: Batch[];
  batchReads: number;
  /** The last blob written through ByteStream (Read reads it). */
  streamed?: { hash: string; size: number };
  stop(): Promise<void>;
}

type Batch = { digest: { hash: string; sizeBytes: bigint }; data: Uint8Array }[];

/** One row: its label, what a call moves, and the untimed preparation of a server's next call (resolving to the call). */
interface Scenario {
  name: string;
  unit: string;
  /** Items per call (digests, blobs, MiB). */
  items: number;
  calls: number;
  /** Untimed calls to each server before the first pass is timed (connection, JIT, caches); default 1. */
  warmUpCalls?: number;
  next(target: Target): Promise<() => Promise<unknown>>;
}

/**
 * Starts every server, runs every row interleaved across them, stops them. Returns each server's rows, in the order
 * of `specs`.
 */
export async function runGrpcInterleaved(
  specs: GrpcServerSpec[],
  options: GrpcBenchOptions = {},
): Promise<GrpcBenchRow[][]> {
  const o = {
    streamBytes: 64 * MiB,
    findMissingDigests: 10_000,
    findMissingCalls: 20,
    batchCalls: 10,
    writeCalls: 8,
    readCalls: 16,
    batchBlobBytes: 1024,
    batchBlobsPerCall: 1000,
    passes: 2,
    ...options,
  };
  if (new Set(specs.map((s) => s.label)).size !== specs.length) throw new Error('gRPC bench: server labels repeat');
  const dir = reachableTempDir('larder-bench-grpc-');
  const targets: Target[] = [];
  try {
    for (const spec of specs) targets.push(await startTarget(spec, join(dir, spec.label), o.profileDir));
    // FindMissingBlobs: half the digests present, so both answers are exercised.
    const present = Array.from({ length: o.findMissingDigests / 2 }, (_, i) => Buffer.from(`present ${i}`));
    const digests = [
      ...present.map(digestOf),
      ...Array.from({ length: o.findMissingDigests / 2 }, (_, i) => digestOf(Buffer.from(`absent ${i}`))),
    ];
    for (const target of targets) {
      for (let i = 0; i < present.length; i += 1000) {
        const requests = present.slice(i, i + 1000).map((data) => ({ digest: digestOf(data), data }));
        await target.cas.batchUpdateBlobs({ requests });
      }
    }
    const stream = streamSource(o.streamBytes);
    const scenarios: Scenario[] = [
      {
        name: `FindMissingBlobs (${o.findMissingDigests} digests)`,
        unit: 'digests/s',
        items: o.findMissingDigests,
        calls: o.findMissingCalls,
        // The executor's first calls of 10,000 digests took 30-60 ms where later ones took 12-20 (V8 compiling
        // the decoder and the index lookups, its young generation growing); bazel-remote needs no warming.
        warmUpCalls: 10,
        next: async (t) => () => t.cas.findMissingBlobs({ blobDigests: digests }),
      },
      {
        name: `BatchUpdateBlobs (${o.batchBlobsPerCall} × ${o.batchBlobBytes} B)`,
        unit: 'blobs/s',
        items: o.batchBlobsPerCall,
        calls: o.batchCalls,
        next: async (t) => {
          const batch = Array.from({ length: o.batchBlobsPerCall }, () => randomBytes(o.batchBlobBytes)).map(
            (data) => ({ digest: digestOf(data), data }),
          );
          t.batches.push(batch);
          return () => t.cas.batchUpdateBlobs({ requests: batch });
        },
      },
      {
        name: `BatchReadBlobs (${o.batchBlobsPerCall} × ${o.batchBlobBytes} B)`,
        unit: 'blobs/s',
        items: o.batchBlobsPerCall,
        calls: o.batchCalls,
        next: async (t) => {
          const batch = t.batches[t.batchReads++ % t.batches.length]!;
          return () => t.cas.batchReadBlobs({ digests: batch.map((b) => b.digest) });
        },
      },
      {
        name: `ByteStream.Write (${o.streamBytes / MiB} MiB)`,
        unit: 'MiB/s',
        items: o.streamBytes / MiB,
        calls: o.writeCalls,
        next: async (t) => {
          const { hash, requests } = stream.fresh();
          t.streamed = { hash, size: o.streamBytes };
          return async () => {
            const { committedSize } = await t.bytestream.write(requests());
            if (committedSize !== BigInt(o.streamBytes))
              throw new Error(`${t.label}: Write committed ${committedSize} of ${o.streamBytes} bytes`);
          };
        },
      },
      {
        name: `ByteStream.Read (${o.streamBytes / MiB} MiB)`,
        unit: 'MiB/s',
        items: o.streamBytes / MiB,
        calls: o.readCalls,
        next: async (t) => {
          const { hash, size } = t.streamed!;
          return async () => {
            let got = 0;
            for await (const part of t.bytestream.read({ resourceName: `blobs/${hash}/${size}` }))
              got += part.data.byteLength;
            if (got !== size) throw new Error(`${t.label}: Read got ${got} of ${size} bytes`);
          };
        },
      },
    ];

    const tallies = scenarios.map(() => new Map(targets.map((t) => [t.label, [] as Tally[]])));
    for (let pass = 0; pass < o.passes; pass++) {
      for (const [s, scenario] of scenarios.entries()) {
        // Untimed, on the first pass (connection, JIT, caches), the servers taking turns.
        if (pass === 0)
          for (let call = 0; call < (scenario.warmUpCalls ?? 1); call++)
            for (const target of targets) await (await scenario.next(target))();
        const byLabel = new Map(targets.map((t) => [t.label, t]));
        const quads = Math.max(1, Math.ceil(scenario.calls / 2));
        const result = await interleave(
          targets.map((t) => t.label),
          quads,
          async (label, _block, tally) => {
            const target = byLabel.get(label)!;
            const call = await scenario.next(target);
            const before = tally.seconds;
            await measure(target.pid, tally, 1, call);
            tally.latencies.push((tally.seconds - before) * 1000);
          },
        );
        for (const quad of result.quads) for (const t of targets) tallies[s]!.get(t.label)!.push(quad[t.label]!);
      }
    }
    return targets.map((t) => scenarios.map((scenario, s) => row(scenario, tallies[s]!.get(t.label)!)));
  } finally {
    for (const target of targets) await target.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One server's row from its quads' tallies. */
function row(scenario: Scenario, quads: Tally[]): GrpcBenchRow {
  const total = emptyTally();
  for (const q of quads) addTally(total, q);
  return {
    scenario: scenario.name,
    unit: scenario.unit,
    callsPerSecond: callsPerSecond(total),
    throughput: callsPerSecond(total) * scenario.items,
    medianMs: percentile(
      total.latencies.sort((a, b) => a - b),
      0.5,
    ),
    serverCpuMs: total.cpuNs / 1e6 / total.calls,
    clientCpuMs: total.clientCpuUs / 1000 / total.calls,
    quadThroughputs: quads.map((q) => callsPerSecond(q) * scenario.items),
  };
}

/**
 * Blobs for ByteStream.Write, a fresh one per call (a server may skip a blob it already has): one random buffer
 * whose first bytes are overwritten with a new UUID each time, hashed before the call is timed, sent in 1 MiB
 * requests as Bazel sends them.
 */
function streamSource(bytes: number) {
  const blob = randomBytes(bytes);
  return {
    fresh() {
      blob.write(randomUUID(), 0, 'latin1');
      const hash = createHash('sha256').update(blob).digest('hex');
      const name = `uploads/${randomUUID()}/blobs/${hash}/${bytes}`;
      function* requests() {
        for (let offset = 0; offset < bytes; offset += MiB) {
          yield {
            resourceName: offset === 0 ? name : '',
            writeOffset: BigInt(offset),
            data: blob.subarray(offset, offset + MiB),
            finishWrite: offset + MiB >= bytes,
          };
        }
      }
      return { hash, requests };
    },
  };
}

/**
 * One server alone: larder's executor (or bazel-remote, options.server), every row, one pass unless told (the caller
 * runs it again for each round).
 */
export async function runGrpcBench(options: GrpcBenchOptions = {}): Promise<GrpcBenchRow[]> {
  const server = options.server ?? 'larder';
  const [rows] = await runGrpcInterleaved([{ label: server, server, root: options.root }], { passes: 1, ...options });
  return rows!;
}

/** larder and bazel-remote interleaved; `passes` as GrpcBenchOptions.passes. */
export async function runGrpcSideBySide(
  options: GrpcBenchOptions,
  passes: number,
): Promise<{ larder: GrpcBenchRow[]; peer: GrpcBenchRow[] }> {
  const [larder, peer] = await runGrpcInterleaved(
    [
      { label: 'larder', server: 'larder' },
      { label: 'bazel-remote', server: 'bazel-remote' },
    ],
    { ...options, passes },
  );
  return { larder: larder!, peer: peer! };
}

/** One server's rows as a table. */
export function formatGrpcRows(rows: GrpcBenchRow[]): string {
  const header = ['gRPC scenario', 'calls/s', 'throughput', 'unit', 'median ms', 'server CPU ms/call'];
  return formatTable(
    header,
    rows.map((r) => [
      r.scenario,
      num(r.callsPerSecond),
      num(r.throughput),
      r.unit,
      num(r.medianMs),
      num(r.serverCpuMs),
    ]),
  );
}

/**
 * Two servers of one interleaved run, row by row: each one's throughput over all its blocks, their ratio, the
 * ratio's median and spread over the quads, and each one's CPU per call (server, then client).
 */
export function formatGrpcPair(first: GrpcBenchRow[], second: GrpcBenchRow[], names: [string, string]): string {
  const [a, b] = names;
  const header = [
    'gRPC scenario',
    'unit',
    a,
    b,
    `${a} ÷ ${b}`,
    '÷ per quad: median (low–high)',
    `server CPU ms/call ${a}`,
    b,
    `client CPU ms/call ${a}`,
    b,
  ];
  const body = first.map((r, i) => {
    const s = second[i]!;
    const ratios = r.quadThroughputs.map((t, q) => t / s.quadThroughputs[q]!);
    return [
      r.scenario,
      r.unit,
      num(r.throughput),
      num(s.throughput),
      `${(r.throughput / s.throughput).toFixed(2)}×`,
      formatSpread(spread(ratios)),
      num(r.serverCpuMs),
      num(s.serverCpuMs),
      num(r.clientCpuMs),
      num(s.clientCpuMs),
    ];
  });
  return formatTable(header, body);
}

const INTERLEAVED_NOTE =
  'Throughput over all timed calls; the servers ran at once, one call per block, in A-B-B-A order, so ÷ per quad ' +
  'is the ratio within each quad and its spread is the noise. Same client for both; stores on the same file system.';

export function formatGrpcSideBySide(larder: GrpcBenchRow[], peer: GrpcBenchRow[]): string {
  return `${formatGrpcPair(larder, peer, ['larder', 'bazel-remote'])}\n\n${INTERLEAVED_NOTE}`;
}

/**
 * This larder against another checkout (BENCH_BEFORE) measured in separate runs, one after the other (bench/run.ts
 * does that): each cell lists every run's throughput, so the spread between runs shows how noisy the machine was.
 * `npx tsx bench/grpc.ts` with BENCH_BEFORE interleaves them instead (formatGrpcPair).
 */
export function formatGrpcComparison(now: GrpcBenchRow[][], before: GrpcBenchRow[][]): string {
  const runs = (rounds: GrpcBenchRow[][], i: number, pick: (r: GrpcBenchRow) => number) =>
    rounds.map((rows) => num(pick(rows[i]!))).join(', ');
  const best = (rounds: GrpcBenchRow[][], i: number) => Math.max(...rounds.map((rows) => rows[i]!.throughput));
  const header = ['gRPC scenario', 'unit', 'now', 'before', 'now ÷ before', 'server CPU ms/call now', 'before'];
  const body = now[0]!.map((r, i) => [
    r.scenario,
    r.unit,
    runs(now, i, (x) => x.throughput),
    runs(before, i, (x) => x.throughput),
    `${(best(now, i) / best(before, i)).toFixed(2)}×`,
    runs(now, i, (x) => x.serverCpuMs),
    runs(before, i, (x) => x.serverCpuMs),
  ]);
  return `${formatTable(header, body)}\n\nnow ÷ before: best run of each; the runs alternated (now, before, now…).`;
}

function digestOf(data: Uint8Array) {
  return { hash: createHash('sha256').update(data).digest('hex'), sizeBytes: BigInt(data.byteLength) };
}

async function startTarget(spec: GrpcServerSpec, dir: string, profileDir: string | undefined): Promise<Target> {
  const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const server =
    spec.server === 'bazel-remote'
      ? await startBazelRemote(dir, undefined).then((peer) => ({ ...peer, address: peer.grpcAddress }))
      : await startBenchExecutor(dir, nodeFlags, [], spec.root);
  const cas = createClient(ContentAddressableStorage, server.address);
  const bytestream = createClient(ByteStream, server.address);
  return {
    label: spec.label,
    pid: server.pid,
    cas,
    bytestream,
    batches: [],
    batchReads: 0,
    async stop() {
      cas.close();
      bytestream.close();
      await server.stop();
    },
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const options: GrpcBenchOptions = {
    streamBytes: Number(process.env.BENCH_GRPC_STREAM_MIB ?? 64) * MiB,
    passes: Number(process.env.BENCH_GRPC_ROUNDS ?? 2),
    profileDir: process.env.BENCH_PROFILE_DIR || undefined,
  };
  const before = process.env.BENCH_BEFORE || undefined;
  const specs: GrpcServerSpec[] = [{ label: 'larder', server: 'larder' }];
  if (before !== undefined) specs.push({ label: 'before', server: 'larder', root: resolve(before) });
  if (process.env.BENCH_GRPC_PEER !== '0') specs.push({ label: 'bazel-remote', server: 'bazel-remote' });
  const rows = await runGrpcInterleaved(specs, options);
  if (specs.length === 1) console.log(formatGrpcRows(rows[0]!));
  for (let i = 0; i < specs.length; i++)
    for (let j = i + 1; j < specs.length; j++)
      console.log(`\n${formatGrpcPair(rows[i]!, rows[j]!, [specs[i]!.label, specs[j]!.label])}`);
  if (specs.length > 1) console.log(`\n${INTERLEAVED_NOTE}`);
  if (options.profileDir !== undefined)
    console.log(`executor profile in ${options.profileDir} (npx tsx bench/profile-summary.ts FILE)`);
}
