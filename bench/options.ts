/**
 * Bench settings, from the environment (and `--quick` on the command line):
 *
 *   BENCH_QUICK=1 / --quick   smoke-check size: 1 s runs, 4KiB and 1MiB, 16 connections, a 64 MiB stream
 *   BENCH_DURATION=3          seconds measured per run (each server, each scenario/size/concurrency)
 *   BENCH_REPEAT=1            measured runs per cell; the table keeps the best (a shared machine only ever slows a run down)
 *   BENCH_WARMUP=0.5          seconds of unmeasured load before each measured run
 *   BENCH_SIZES=4KiB,64KiB,1MiB
 *   BENCH_CONC=1,16,64        connections (each keeps one request in flight)
 *   BENCH_SCENARIOS=get-hit,put-existing,put-new
 *   BENCH_BLOBS=100           distinct pre-populated blobs per size (GET hits and re-uploads cycle over them)
 *   BENCH_STREAM_SIZE=1GiB    the big blob streamed in and out for the RSS figure; 0 skips it
 *   BENCH_SERVERS=nginx,bazel-remote,node,deno,bun   side by side (bench/servers.ts: nginx, bazel-remote, node, deno,
 *                             bun, node-p2, deno-p2, bun-p2, node-before, deno-before, bun-before)
 *   BENCH_BEFORE=path         another larder checkout (say, main) to run as node-before/deno-before/bun-before (the first two
 *                             added by default when set)
 *   BENCH_PIN=1               server on CPU 1, load generator on CPU 0 (needs taskset and 2 CPUs); 0 = no pinning
 *   BENCH_WAIT_QUIET=1        before each measured run, wait (≤ 30 s, ≤ 3 min in all) for other work on the machine to go quiet; 0 = don't
 *   BENCH_PROFILE=1           run larder under --cpu-prof; profiles land in BENCH_PROFILE_DIR and are summarised
 *   BENCH_JSON=path           also write every measurement as JSON
 *   BENCH_GRPC=1              also measure the gRPC executor (bench/grpc.ts); 0 skips it
 *   BENCH_S3=1                also measure the s3 and tiered(memory, s3) stores against s3rver (bench/s3.ts), and
 *                             FindMissingBlobs across hosts with and without the bucket index (bench/find-missing.ts); 0 skips it
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../shared/size.ts';
import { SCENARIOS, type Scenario } from './protocol.ts';
import { parseServerNames, type ServerName } from './servers.ts';

export interface BenchOptions {
  quick: boolean;
  seconds: number;
  warmupSeconds: number;
  repeat: number;
  sizes: number[];
  connections: number[];
  scenarios: Scenario[];
  blobCount: number;
  streamSize: number;
  servers: ServerName[];
  before: string | null;
  pin: boolean;
  waitQuiet: boolean;
  profileDir: string | null;
  jsonPath: string | null;
  grpc: boolean;
  s3: boolean;
}

export function readOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const unknown = argv.filter((arg) => arg !== '--quick');
  if (unknown.length > 0)
    throw new Error(`unknown arguments ${unknown.join(' ')}: settings are BENCH_* variables (see bench/options.ts)`);
  const quick = argv.includes('--quick') || flag(env.BENCH_QUICK);
  const list = (name: string, fallback: string) =>
    (env[name] || fallback)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const scenarios = list('BENCH_SCENARIOS', SCENARIOS.join(','));
  for (const s of scenarios)
    if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s}; known: ${SCENARIOS.join(', ')}`);
  const before = env.BENCH_BEFORE || null;
  const servers = parseServerNames(
    list(
      'BENCH_SERVERS',
      before === null ? 'nginx,bazel-remote,node,deno,bun' : 'nginx,bazel-remote,node,node-before,deno,deno-before,bun',
    ),
    before,
  );
  return {
    quick,
    seconds: positive('BENCH_DURATION', env.BENCH_DURATION, quick ? 1 : 3),
    repeat: Math.round(positive('BENCH_REPEAT', env.BENCH_REPEAT, 1)),
    warmupSeconds: nonNegative('BENCH_WARMUP', env.BENCH_WARMUP, quick ? 0.3 : 0.5),
    sizes: list('BENCH_SIZES', quick ? '4KiB,1MiB' : '4KiB,64KiB,1MiB').map(parseSize),
    connections: list('BENCH_CONC', quick ? '16' : '1,16,64').map((c) => positive('BENCH_CONC', c, 1)),
    scenarios: scenarios as Scenario[],
    blobCount: positive('BENCH_BLOBS', env.BENCH_BLOBS, 100),
    streamSize: parseSize(env.BENCH_STREAM_SIZE || (quick ? '64MiB' : '1GiB')),
    servers,
    before,
    pin: env.BENCH_PIN === undefined ? true : flag(env.BENCH_PIN),
    waitQuiet: env.BENCH_WAIT_QUIET === undefined ? true : flag(env.BENCH_WAIT_QUIET),
    profileDir: flag(env.BENCH_PROFILE)
      ? env.BENCH_PROFILE_DIR || join(tmpdir(), `larder-bench-profiles-${Date.now()}`)
      : null,
    jsonPath: env.BENCH_JSON || null,
    grpc: env.BENCH_GRPC === undefined ? true : flag(env.BENCH_GRPC),
    s3: env.BENCH_S3 === undefined ? true : flag(env.BENCH_S3),
  };
}

function flag(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`${name} must be a positive number, not ${JSON.stringify(text)}`);
  return value;
}

function nonNegative(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`${name} must be a number ≥ 0, not ${JSON.stringify(text)}`);
  return value;
}
