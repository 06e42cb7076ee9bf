/**
 * gRPC (REAPI) figures for `larder executor`: FindMissingBlobs of 10,000 digests, BatchUpdateBlobs and
 * BatchReadBlobs of small blobs, and ByteStream Write/Read of one large blob. The server runs as its own
 * process on a fresh disk store, so client and server each get a core. The same scenarios, with the same
 * (larder's generated) client, run against bazel-remote (bench/bazel-remote.ts: its disk store uncompressed, on
 * the same file system) in the same run, rounds alternating, so the table shows
 * larder ÷ bazel-remote for every row.
 *
 *   import { runGrpcBench, formatGrpcRows } from './grpc.ts';
 *   const rows = await runGrpcBench({ streamBytes: 256 * 2 ** 20 });
 *   console.log(formatGrpcRows(rows));
 *
 * Or on its own: `npx tsx bench/grpc.ts` (BENCH_GRPC_STREAM_MIB=64 for a quicker run; BENCH_GRPC_ROUNDS=N rounds
 * of each server, default 2; BENCH_GRPC_PEER=0 leaves bazel-remote out; BENCH_BEFORE=path of another larder
 * checkout, built, adds its executor to the rounds for before/after figures; BENCH_PROFILE_DIR=DIR profiles the
 * executor).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createClient } from '../executor/grpc/client.ts';
import { startBazelRemote } from './bazel-remote.ts';
import { cpuSeconds } from './proc.ts';
import { ContentAddressableStorage } from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { ByteStream } from '../shared/proto/gen/google/bytestream/bytestream_pb.ts';

export interface GrpcBenchOptions {
  /** Bytes of the one ByteStream blob (default 256 MiB). */
  streamBytes?: number;
  /** Digests per FindMissingBlobs call (default 10,000) and how many calls (default 20). */
  findMissingDigests?: number;
  findMissingCalls?: number;
  /** Small-blob batches: blob size (default 1 KiB), blobs per call (default 1,000), calls (default 20). */
  batchBlobBytes?: number;
  batchBlobsPerCall?: number;
  batchCalls?: number;
  /** Another larder checkout to run the executor from (BENCH_BEFORE), for before/after figures. */
  root?: string;
  /** Which server answers: larder's executor (default) or the Go peer, bazel-remote. */
  server?: 'larder' | 'bazel-remote';
  /** Run the executor under --cpu-prof, its profile written here when it stops (BENCH_PROFILE). */
  profileDir?: string;
}

export interface GrpcBenchRow {
  scenario: string;
  /** Calls per second (unary scenarios) or 1 for a single stream. */
  callsPerSecond: number;
  /** Items per second: digests, blobs, or MiB for streams. */
  throughput: number;
  unit: string;
  /** Median call latency in milliseconds (whole stream for ByteStream). */
  medianMs: number;
  /** The executor's CPU time per call in milliseconds (user + system, all its threads), over the timed calls. */
  serverCpuMs: number;
}

const MiB = 1024 * 1024;
const REPO_ROOT = resolve(import.meta.dirname, '..');

export async function runGrpcBench(options: GrpcBenchOptions = {}): Promise<GrpcBenchRow[]> {
  const o = {
    streamBytes: 256 * MiB,
    findMissingDigests: 10_000,
    findMissingCalls: 20,
    batchBlobBytes: 1024,
    batchBlobsPerCall: 1000,
    batchCalls: 20,
    ...options,
  };
  const dir = mkdtempSync(join(tmpdir(), 'larder-bench-grpc-'));
  const nodeFlags = o.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`];
  const server =
    options.server === 'bazel-remote'
      ? await startBazelRemote(dir, undefined).then((peer) => ({ ...peer, address: peer.grpcAddress }))
      : await startExecutor(o.root ?? REPO_ROOT, nodeFlags, [
          '--store',
          `disk:${join(dir, 'store')}`,
          '--max-size',
          '4GiB',
          '--log-level',
          'warn',
        ]);
  const cas = createClient(ContentAddressableStorage, server.address);
  const bytestream = createClient(ByteStream, server.address);
  try {
    const rows: GrpcBenchRow[] = [];

    // FindMissingBlobs: half the digests present, so both answers are exercised.
    const present = Array.from({ length: o.findMissingDigests / 2 }, (_, i) => Buffer.from(`present ${i}`));
    for (let i = 0; i < present.length; i += 1000) {
      await cas.batchUpdateBlobs({
        requests: present.slice(i, i + 1000).map((data) => ({ digest: digestOf(data), data })),
      });
    }
    const digests = [
      ...present.map(digestOf),
      ...Array.from({ length: o.findMissingDigests / 2 }, (_, i) => digestOf(Buffer.from(`absent ${i}`))),
    ];
    const findTimes = await timeCalls(server.pid, o.findMissingCalls, () =>
      cas.findMissingBlobs({ blobDigests: digests }),
    );
    rows.push(
      unaryRow(`FindMissingBlobs (${o.findMissingDigests} digests)`, findTimes, o.findMissingDigests, 'digests/s'),
    );

    // Batch calls of fresh small blobs, then the same blobs read back.
    const batches = Array.from({ length: o.batchCalls }, (_, _c) =>
      Array.from({ length: o.batchBlobsPerCall }, () => randomBytes(o.batchBlobBytes)).map((data) => ({
        digest: digestOf(data),
        data,
      })),
    );
    let call = 0;
    const updateTimes = await timeCalls(server.pid, o.batchCalls, () =>
      cas.batchUpdateBlobs({ requests: batches[call++]! }),
    );
    rows.push(
      unaryRow(
        `BatchUpdateBlobs (${o.batchBlobsPerCall} × ${o.batchBlobBytes} B)`,
        updateTimes,
        o.batchBlobsPerCall,
        'blobs/s',
      ),
    );
    call = 0;
    const readTimes = await timeCalls(server.pid, o.batchCalls, () =>
      cas.batchReadBlobs({ digests: batches[call++]!.map((b) => b.digest) }),
    );
    rows.push(
      unaryRow(
        `BatchReadBlobs (${o.batchBlobsPerCall} × ${o.batchBlobBytes} B)`,
        readTimes,
        o.batchBlobsPerCall,
        'blobs/s',
      ),
    );

    // One large blob through ByteStream, in 1 MiB requests.
    const blob = randomBytes(o.streamBytes);
    const hash = createHash('sha256').update(blob).digest('hex');
    const name = `uploads/${randomUUID()}/blobs/${hash}/${o.streamBytes}`;
    function* writes() {
      for (let offset = 0; offset < blob.byteLength; offset += MiB) {
        const data = blob.subarray(offset, offset + MiB);
        yield {
          resourceName: offset === 0 ? name : '',
          writeOffset: BigInt(offset),
          data,
          finishWrite: offset + MiB >= blob.byteLength,
        };
      }
    }
    const writeMs = await timeStream(server.pid, () => bytestream.write(writes()));
    rows.push(streamRow(`ByteStream.Write (${o.streamBytes / MiB} MiB)`, writeMs, o.streamBytes));
    const readMs = await timeStream(server.pid, async () => {
      let got = 0;
      for await (const part of bytestream.read({ resourceName: `blobs/${hash}/${o.streamBytes}` }))
        got += part.data.byteLength;
      if (got !== o.streamBytes) throw new Error(`read ${got} of ${o.streamBytes} bytes`);
    });
    rows.push(streamRow(`ByteStream.Read (${o.streamBytes / MiB} MiB)`, readMs, o.streamBytes));
    return rows;
  } finally {
    cas.close();
    bytestream.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A Markdown table of the rows (kept here rather than in table.ts so this file stands alone). */
export function formatGrpcRows(rows: GrpcBenchRow[]): string {
  const header = ['gRPC scenario', 'calls/s', 'throughput', 'unit', 'median ms', 'server CPU ms/call'];
  const body = rows.map((r) => [
    r.scenario,
    num(r.callsPerSecond),
    num(r.throughput),
    r.unit,
    num(r.medianMs),
    num(r.serverCpuMs),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const right = [false, true, true, false, true, true];
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

/**
 * This larder against another checkout (BENCH_BEFORE), rounds interleaved: each cell lists every round's figure,
 * so the spread between rounds shows how noisy the machine was.
 */
export function formatGrpcComparison(now: GrpcBenchRow[][], before: GrpcBenchRow[][]): string {
  return formatRounds(
    now,
    before,
    ['now', 'before', 'now ÷ before', 'server CPU ms/call now', 'before'],
    'now ÷ before: best round of each; rounds ran alternately (now, before, now, before…) on the same machine.',
  );
}

/**
 * larder against bazel-remote, rounds alternating: each cell lists every round's figure (the spread shows how
 * noisy the machine was); the ratio is of the best round of each.
 */
export function formatGrpcSideBySide(larder: GrpcBenchRow[][], peer: GrpcBenchRow[][]): string {
  return formatRounds(
    larder,
    peer,
    ['larder', 'bazel-remote', 'larder ÷ bazel-remote', 'server CPU ms/call larder', 'bazel-remote'],
    'larder ÷ bazel-remote: throughput, best round of each; rounds ran alternately (larder, bazel-remote, …), ' +
      "both with larder's generated client, stores on the same file system.",
  );
}

/** Two series of alternating rounds, row by row: every round's throughput and CPU, and the ratio of the best rounds. */
function formatRounds(
  first: GrpcBenchRow[][],
  second: GrpcBenchRow[][],
  columns: [string, string, string, string, string],
  footer: string,
): string {
  const header = ['gRPC scenario', 'unit', ...columns];
  const rounds = (runs: GrpcBenchRow[][], i: number, pick: (r: GrpcBenchRow) => number) =>
    runs.map((rows) => num(pick(rows[i]!))).join(', ');
  const best = (runs: GrpcBenchRow[][], i: number) => Math.max(...runs.map((rows) => rows[i]!.throughput));
  const body = first[0]!.map((row, i) => [
    row.scenario,
    row.unit,
    rounds(first, i, (r) => r.throughput),
    rounds(second, i, (r) => r.throughput),
    `${(best(first, i) / best(second, i)).toFixed(2)}×`,
    rounds(first, i, (r) => r.serverCpuMs),
    rounds(second, i, (r) => r.serverCpuMs),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...body.map(line), '', footer].join('\n');
}

/** larder and bazel-remote in alternating rounds of the same scenarios. */
export async function runGrpcSideBySide(
  options: GrpcBenchOptions,
  rounds: number,
): Promise<{ larder: GrpcBenchRow[][]; peer: GrpcBenchRow[][] }> {
  const larder: GrpcBenchRow[][] = [];
  const peer: GrpcBenchRow[][] = [];
  for (let round = 0; round < rounds; round++) {
    larder.push(await runGrpcBench({ ...options, server: 'larder' }));
    peer.push(await runGrpcBench({ ...options, server: 'bazel-remote' }));
  }
  return { larder, peer };
}

function num(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value >= 100) return Math.round(value).toString();
  return value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function digestOf(data: Uint8Array) {
  return { hash: createHash('sha256').update(data).digest('hex'), sizeBytes: BigInt(data.byteLength) };
}

/** Call latencies in ms, and the server's CPU per timed call (ms). */
type TimedCalls = number[] & { cpuMs: number };

/** One untimed warm-up call (connection, JIT), then `count - 1` timed ones, with the server's CPU over those. */
async function timeCalls(pid: number, count: number, call: () => Promise<unknown>): Promise<TimedCalls> {
  await call();
  const before = cpuSeconds(pid);
  const times: number[] = [];
  for (let i = 1; i < count; i++) times.push(await timeOnce(call));
  return Object.assign(times, { cpuMs: ((cpuSeconds(pid) - before) * 1000) / times.length });
}

/** One timed call (a whole stream), with the server's CPU over it. */
async function timeStream(pid: number, call: () => Promise<unknown>): Promise<TimedCalls> {
  const before = cpuSeconds(pid);
  const ms = await timeOnce(call);
  return Object.assign([ms], { cpuMs: (cpuSeconds(pid) - before) * 1000 });
}

async function timeOnce(call: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await call();
  return performance.now() - start;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

function unaryRow(scenario: string, times: TimedCalls, itemsPerCall: number, unit: string): GrpcBenchRow {
  const callsPerSecond = (times.length * 1000) / times.reduce((a, b) => a + b, 0);
  return {
    scenario,
    callsPerSecond,
    throughput: callsPerSecond * itemsPerCall,
    unit,
    medianMs: median(times),
    serverCpuMs: times.cpuMs,
  };
}

function streamRow(scenario: string, times: TimedCalls, bytes: number): GrpcBenchRow {
  const ms = times[0]!;
  return {
    scenario,
    callsPerSecond: 1000 / ms,
    throughput: bytes / MiB / (ms / 1000),
    unit: 'MiB/s',
    medianMs: ms,
    serverCpuMs: times.cpuMs,
  };
}

interface Server {
  address: string;
  pid: number;
  stop(): Promise<void>;
}

/** `larder executor` as a child process on a free port; stopped by its PID. */
async function startExecutor(root: string, nodeFlags: string[], args: string[]): Promise<Server> {
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeFlags, join(root, 'bin/larder.js'), 'executor', '--listen', '127.0.0.1:0', ...args],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const address = await new Promise<string>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`executor did not start:\n${output}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      const match = /listening on grpc:\/\/(\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        ready(match[1]!);
      }
    });
    child.once('exit', (code) => fail(new Error(`executor exited (${code}):\n${output}`)));
  });
  return {
    address,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM');
      const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'), 8_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const streamMiB = Number(process.env.BENCH_GRPC_STREAM_MIB ?? 256);
  const profileDir = process.env.BENCH_PROFILE_DIR || undefined;
  const settings = { streamBytes: streamMiB * MiB, profileDir };
  const before = process.env.BENCH_BEFORE || undefined;
  if (before !== undefined) {
    // Three servers in alternating rounds: this checkout, the one at BENCH_BEFORE, and bazel-remote (unless
    // BENCH_GRPC_PEER=0), so before/after and both multiples of the peer come from one run.
    const now: GrpcBenchRow[][] = [];
    const then: GrpcBenchRow[][] = [];
    const peer: GrpcBenchRow[][] = [];
    for (let round = 0; round < Number(process.env.BENCH_GRPC_ROUNDS ?? 2); round++) {
      now.push(await runGrpcBench({ ...settings, server: 'larder' }));
      then.push(await runGrpcBench({ ...settings, server: 'larder', root: resolve(before) }));
      if (process.env.BENCH_GRPC_PEER !== '0') peer.push(await runGrpcBench({ ...settings, server: 'bazel-remote' }));
    }
    console.log(formatGrpcComparison(now, then));
    if (peer.length > 0)
      console.log(`\n${formatGrpcSideBySide(now, peer)}\n\nbefore:\n${formatGrpcSideBySide(then, peer)}`);
  } else if (process.env.BENCH_GRPC_PEER === '0') console.log(formatGrpcRows(await runGrpcBench(settings)));
  else {
    const { larder, peer } = await runGrpcSideBySide(settings, Number(process.env.BENCH_GRPC_ROUNDS ?? 2));
    console.log(formatGrpcSideBySide(larder, peer));
  }
  if (profileDir !== undefined)
    console.log(`executor profile in ${profileDir} (npx tsx bench/profile-summary.ts FILE)`);
}
