/**
 * `npm run bench`: larder's edge against a reference server (nginx + WebDAV) on the same machine, same
 * blobs, same load, side by side. `npm run bench -- --quick` is a smoke-sized run. Settings: bench/options.ts.
 *
 * Layout of a run:
 *   - one load-generator process (autocannon) pinned to CPU 0; the server under test pinned to CPU 1,
 *     so neither steals the other's core (the machine has two);
 *   - per blob size: a fresh larder (disk store) and a fresh nginx (one worker), both fed the same
 *     pre-populated blob set; then for every scenario × concurrency, larder and nginx take turns
 *     (warm-up, then a measured run), so slow drift on the machine hits both alike;
 *   - after each PUT-of-new-blobs run, `sync` (outside the clock) so the next run doesn't pay for the
 *     previous one's dirty pages;
 *   - finally a fresh larder (and nginx) streams one big blob in and out while its RSS is watched.
 * Every response status is checked; a run with any non-2xx, connection error or timeout is flagged and the
 * bench exits non-zero.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSize } from '../shared/size.ts';
import { LoadGenerator } from './loadgen-client.ts';
import { bazelRemoteFound } from './bazel-remote.ts';
import { NGINX, type RunningServer } from './nginx.ts';
import { type ServerName, startServer as startNamed } from './servers.ts';
import { readOptions, type BenchOptions } from './options.ts';
import {
  cpuSeconds,
  treeCpuSeconds,
  defaultPinning,
  machineBusySeconds,
  resetPeakRss,
  sampleRss,
  statusKiB,
  waitForQuiet,
  type Pinning,
} from './proc.ts';
import { summarize } from './profile-summary.ts';
import type { LoadResult, Scenario } from './protocol.ts';
import { percentile } from './interleave.ts';
import { formatTable, num } from './table.ts';
import {
  formatGrpcComparison,
  formatGrpcRows,
  formatGrpcSideBySide,
  type GrpcBenchRow,
  runGrpcBench,
  runGrpcSideBySide,
} from './grpc.ts';
import { formatS3Rows, runS3Bench } from './s3.ts';
import { formatFindMissingRows, runFindMissingBench } from './find-missing.ts';
import { formatExecutionRows, runExecutionBench } from './execution.ts';
import { formatAssetRows, runAssetBench } from './asset.ts';
import { formatDockerRows, runDockerBench } from './docker.ts';
import { fleetTable, runFleetBench } from './fleet.ts';
import { formatPersistentRows, runPersistentWorkerBench } from './persistent-workers.ts';

interface Measurement extends LoadResult {
  server: ServerName;
  scenario: Scenario;
  size: number;
  connections: number;
  serverCpu: number;
  /** CPU used meanwhile by everything except the server and the generator, in % of one core (noise). */
  otherCpu: number;
}

/** Background CPU (% of one core) above which a run is marked as disturbed. */
const NOISY = 20;

/** Machine load (cores) under which a run may start when BENCH_WAIT_QUIET is on. */
const QUIET_CORES = 0.15;

/** Total time the bench may spend waiting for quiet; past it, runs start regardless and are flagged if disturbed. */
let quietBudgetMs = 180_000;

async function settle(options: BenchOptions): Promise<void> {
  if (!options.waitQuiet || quietBudgetMs <= 0) return;
  const started = Date.now();
  await waitForQuiet(QUIET_CORES, Math.min(30_000, quietBudgetMs));
  quietBudgetMs -= Date.now() - started;
}

const benchStarted = Date.now();
const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<number> {
  const options = readOptions(process.argv.slice(2), process.env);
  const pinning = defaultPinning(options.pin);
  printSetup(options, pinning);

  const work = await mkdtemp(join(tmpdir(), 'larder-bench-'));
  if (options.profileDir) await mkdir(options.profileDir, { recursive: true });
  const generator = LoadGenerator.start(pinning.generator);
  const running = new Set<RunningServer>();
  /** The best attempt of each run (BENCH_REPEAT), for the table; every attempt is checked for errors. */
  const measurements: Measurement[] = [];
  const attempts: Measurement[] = [];
  let stream: StreamFigures[] = [];
  try {
    for (const size of options.sizes) {
      const servers = new Map<ServerName, RunningServer>();
      for (const name of options.servers) {
        const dir = join(work, `${name}-${size}`);
        await mkdir(dir, { recursive: true });
        const server = await startServer(name, dir, pinning, options);
        running.add(server);
        servers.set(name, server);
        await generator.populate(server.url, size, options.blobCount);
      }
      for (const scenario of options.scenarios) {
        for (const connections of options.connections) {
          // Attempts go round the servers, every other round backwards (A B C, C B A, ...), not one server's in a
          // row: whatever drifts during a cell (the disk's journal and writeback after uploads, another program's
          // load) then weighs on every server alike instead of on whichever ran last.
          const best = new Map<ServerName, Measurement>();
          for (let attempt = 0; attempt < options.repeat; attempt++) {
            const round = attempt % 2 === 0 ? [...servers] : [...servers].reverse();
            for (const [name, server] of round) {
              const m = await measure(generator, server, name, { scenario, size, connections }, options);
              attempts.push(m);
              log(progressLine(m));
              if (scenario === 'put-new') syncDisks();
              // CPU per request is what the tables compare, and a shared machine only ever adds to it.
              const kept = best.get(name);
              if (kept === undefined || cpuMicros(m) < cpuMicros(kept)) best.set(name, m);
            }
          }
          measurements.push(...best.values());
        }
      }
      for (const [name, server] of servers) {
        await server.stop();
        running.delete(server);
        await profileSummary(name, server.pid, options);
        await rm(join(work, `${name}-${size}`), { recursive: true, force: true });
      }
      await generator.forget(size);
    }
    if (options.streamSize > 0) stream = await streamTest(generator, work, pinning, options, running);
  } finally {
    for (const server of running) await server.stop();
    await generator.stop();
    await rm(work, { recursive: true, force: true });
  }

  console.log(resultsTable(measurements, attempts, options));
  const invalid = attempts.filter(
    (m) => m.ok === 0 || Object.keys(m.statuses).length > 0 || m.errors > 0 || m.timeouts > 0,
  );
  if (invalid.length > 0) {
    console.log('\nINVALID: these runs had non-2xx responses, connection errors or timeouts:');
    for (const m of invalid) {
      console.log(
        `  ${m.server} ${m.scenario} ${formatSize(m.size)} c=${m.connections}: ok=${m.ok} statuses=${JSON.stringify(m.statuses)} errors=${m.errors} timeouts=${m.timeouts}`,
      );
    }
  } else {
    console.log(
      `\nEvery response was 2xx (${attempts.reduce((n, m) => n + m.ok, 0)} measured requests); no connection errors or timeouts.`,
    );
  }
  if (stream.length > 0) console.log(`\n${streamTable(stream)}`);
  const othersOk = await otherFrontends(options);
  console.log(`\nbench took ${((Date.now() - benchStarted) / 1000).toFixed(0)} s`);
  if (options.jsonPath)
    writeFileSync(options.jsonPath, JSON.stringify({ options, measurements, attempts, stream }, null, 2));
  return invalid.length > 0 || stream.some((s) => !s.putOk || !s.getOk) || !othersOk ? 1 : 0;
}

async function startServer(
  name: ServerName,
  dir: string,
  pinning: Pinning,
  options: BenchOptions,
): Promise<RunningServer> {
  const nodeFlags = options.profileDir && name === 'node' ? ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] : [];
  return startNamed(name, dir, { pinning, before: options.before, nodeFlags });
}

async function measure(
  generator: LoadGenerator,
  server: RunningServer,
  name: ServerName,
  run: { scenario: Scenario; size: number; connections: number },
  options: BenchOptions,
): Promise<Measurement> {
  const command = { url: server.url, ...run };
  if (options.warmupSeconds > 0) await generator.load({ ...command, seconds: options.warmupSeconds });
  await settle(options);
  // The whole process tree: --processes N serves from workers below the PID we started.
  const cpuBefore = treeCpuSeconds(server.pid);
  const generatorBefore = cpuSeconds(generator.pid);
  const machineBefore = machineBusySeconds();
  const result = await generator.load({ ...command, seconds: options.seconds });
  const serverSeconds = treeCpuSeconds(server.pid) - cpuBefore;
  const generatorSeconds = cpuSeconds(generator.pid) - generatorBefore;
  const otherSeconds = Math.max(0, machineBusySeconds() - machineBefore - serverSeconds - generatorSeconds);
  return {
    server: name,
    ...run,
    ...result,
    serverCpu: (serverSeconds / result.seconds) * 100,
    otherCpu: (otherSeconds / result.seconds) * 100,
  };
}

function syncDisks(): void {
  spawnSync('sync', { stdio: 'ignore', timeout: 120_000 });
}

function reqPerSecond(m: Measurement): number {
  return m.ok / m.seconds;
}

function megabytesPerSecond(m: Measurement): number {
  return (m.ok * m.size) / m.seconds / 1e6;
}

function progressLine(m: Measurement): string {
  const bad =
    Object.keys(m.statuses).length > 0 || m.errors > 0 || m.timeouts > 0
      ? `  ERRORS ${JSON.stringify(m.statuses)} errors=${m.errors} timeouts=${m.timeouts}`
      : '';
  return (
    `  ${m.server.padEnd(11)} ${m.scenario.padEnd(12)} ${formatSize(m.size).padStart(6)} c=${String(m.connections).padEnd(3)} ` +
    `${num(reqPerSecond(m)).padStart(7)} req/s ${num(megabytesPerSecond(m)).padStart(7)} MB/s ` +
    `p50 ${num(m.p50Ms)} p99 ${num(m.p99Ms)} ms  ${num(cpuMicros(m))} µs/req  cpu srv ${m.serverCpu.toFixed(0)}% gen ${m.generatorCpu.toFixed(0)}% other ${m.otherCpu.toFixed(0)}%${bad}`
  );
}

/** Server CPU per request in µs: the figure that does not depend on how many cores the server got. */
function cpuMicros(m: Measurement): number {
  return m.ok === 0 ? Number.NaN : ((m.serverCpu / 100) * m.seconds * 1e6) / m.ok;
}

const SCENARIO_LABEL: Record<Scenario, string> = {
  'get-hit': 'GET hit',
  'put-new': 'PUT new',
  'put-existing': 're-PUT (stored)',
};

/**
 * One row per scenario × size × concurrency; per server its req/s and its CPU µs per request, and for every larder
 * variant that CPU as a multiple of nginx's in the same run (the issue's yardstick). `*` marks a run that shared
 * the machine with more than NOISY% of a core of other work.
 */
function resultsTable(measurements: Measurement[], attempts: Measurement[], options: BenchOptions): string {
  const find = (server: ServerName, scenario: Scenario, size: number, connections: number) =>
    measurements.find(
      (m) => m.server === server && m.scenario === scenario && m.size === size && m.connections === connections,
    );
  const references = (['nginx', 'bazel-remote'] as const).filter((name) => options.servers.includes(name));
  const multiples = references.map((name) => `×${name}`).join(', ');
  const header = ['row', 'conc'];
  for (const server of options.servers) {
    header.push(
      `${server} req/s`,
      (references as readonly string[]).includes(server) ? `${server} µs/req` : `${server} µs/req (${multiples})`,
    );
  }
  const rows: string[][] = [];
  for (const scenario of options.scenarios) {
    for (const size of options.sizes) {
      for (const connections of options.connections) {
        const referenced = references.map((name) => find(name, scenario, size, connections));
        const row = [`${SCENARIO_LABEL[scenario]} ${formatSize(size)}`, String(connections)];
        for (const server of options.servers) {
          const m = find(server, scenario, size, connections);
          if (m === undefined) {
            row.push('-', '-');
            continue;
          }
          const noisy = m.otherCpu > NOISY ? '*' : '';
          const micros = cpuMicros(m);
          const multiple =
            (references as readonly string[]).includes(server) || referenced.includes(undefined)
              ? ''
              : ` (${referenced.map((r) => `${(micros / cpuMicros(r!)).toFixed(1)}×`).join(', ')})`;
          row.push(num(reqPerSecond(m)), `${num(micros)}${multiple}${noisy}`);
        }
        rows.push(row);
      }
    }
  }
  const noisy = measurements.filter((m) => m.otherCpu > NOISY).length;
  const notes = [
    '',
    `µs/req: CPU time of the server process (all its threads and child processes) per 2xx response, best of the attempts; (${multiples}): that as a multiple of the reference's in the same run.`,
    'Servers pinned to one CPU cannot use more than one core; the -p2 variants (--processes 2) run on both, next to the load generator.',
  ];
  if (noisy > 0)
    notes.push(
      `${noisy} run(s) shared the machine with other work (> ${NOISY}% of a core, marked *): treat those rows as noisy.`,
    );
  const spread = repeatSpread(attempts);
  if (spread !== null)
    notes.push(
      `Repeat noise: across the ${options.repeat} attempts of each cell, µs/req varied by a median of ${spread.median.toFixed(0)}% (worst ${spread.worst.toFixed(0)}%).`,
    );
  notes.push(...throughputByRound(attempts));
  return formatTable(header, rows) + notes.join('\n');
}

/**
 * Each larder's req/s as a multiple of bazel-remote's in the same round, median and range over the rounds. The
 * table's req/s is the attempt with the least CPU, whichever round it came from; with the disk's latency
 * swinging from round to round (uploads that sync), the ratio within each round is the fairer throughput figure.
 * The k-th attempt of a server in a cell ran in round k (each round measures every server once).
 */
function throughputByRound(attempts: Measurement[]): string[] {
  const lines: string[] = [];
  for (const [cell, servers] of attemptsByCell(attempts)) {
    const reference = servers.get('bazel-remote');
    if (reference === undefined || reference.length < 2) continue;
    for (const [server, measured] of servers) {
      if (server === 'bazel-remote' || server === 'nginx') continue;
      const ratios = measured
        .map((m, round) => reqPerSecond(m) / reqPerSecond(reference[round]!))
        .sort((a, b) => a - b);
      const median = percentile(ratios, 0.5);
      lines.push(
        `  ${cell}, ${server}: ${median.toFixed(2)} (${ratios[0]!.toFixed(2)}–${ratios.at(-1)!.toFixed(2)}) of ${ratios.length} rounds`,
      );
    }
  }
  return lines.length === 0 ? [] : ["req/s ÷ bazel-remote's in the same round, median (range):", ...lines];
}

/** The attempts of each cell (by its label: scenario, size, connections), each server's in the order they ran. */
function attemptsByCell(attempts: Measurement[]): Map<string, Map<ServerName, Measurement[]>> {
  const cells = new Map<string, Map<ServerName, Measurement[]>>();
  for (const m of attempts) {
    const cell = `${SCENARIO_LABEL[m.scenario]} ${formatSize(m.size)} c=${m.connections}`;
    const servers = cells.get(cell) ?? new Map<ServerName, Measurement[]>();
    servers.set(m.server, [...(servers.get(m.server) ?? []), m]);
    cells.set(cell, servers);
  }
  return cells;
}

/** How much µs/req varied between attempts of one cell (max/min − 1, in %): the run's own noise figure. */
function repeatSpread(attempts: Measurement[]): { median: number; worst: number } | null {
  const perServer = [...attemptsByCell(attempts).values()].flatMap((servers) => [...servers.values()]);
  const spreads = perServer
    .map((measured) => measured.map(cpuMicros))
    .filter((v) => v.length > 1)
    .map((v) => (Math.max(...v) / Math.min(...v) - 1) * 100)
    .sort((a, b) => a - b);
  if (spreads.length === 0) return null;
  return { median: spreads[Math.floor(spreads.length / 2)]!, worst: spreads[spreads.length - 1]! };
}

interface StreamFigures {
  server: ServerName;
  size: number;
  baselineMiB: number;
  putMBps: number;
  putPeakMiB: number;
  putOk: boolean;
  getMBps: number;
  getPeakMiB: number;
  getOk: boolean;
  /** Background CPU (% of one core) during the PUT and the GET. */
  otherCpu: [number, number];
}

/** One big blob in and out of a fresh server, watching its resident memory: /proc VmHWM (reset before each direction) and 20 ms VmRSS samples. */
async function streamTest(
  generator: LoadGenerator,
  work: string,
  pinning: Pinning,
  options: BenchOptions,
  running: Set<RunningServer>,
): Promise<StreamFigures[]> {
  const figures: StreamFigures[] = [];
  for (const name of options.servers) {
    const dir = join(work, `${name}-stream`);
    await mkdir(dir, { recursive: true });
    const server = await startServer(name, dir, pinning, { ...options, profileDir: null });
    running.add(server);
    try {
      const baselineMiB = statusKiB(server.pid, 'VmRSS') / 1024;
      const peakDuring = async (direction: 'put' | 'get') => {
        await settle(options);
        const reset = resetPeakRss(server.pid);
        const sampler = sampleRss(server.pid);
        const busyBefore = machineBusySeconds();
        const cpuBefore = cpuSeconds(server.pid) + cpuSeconds(generator.pid);
        const result = await generator.stream(server.url, options.streamSize, direction);
        const other =
          machineBusySeconds() - busyBefore - (cpuSeconds(server.pid) + cpuSeconds(generator.pid) - cpuBefore);
        const sampled = sampler.stop();
        const hwm = reset ? statusKiB(server.pid, 'VmHWM') : 0;
        return {
          result,
          peakMiB: Math.max(sampled, hwm) / 1024,
          otherCpu: Math.max(0, (other / result.seconds) * 100),
        };
      };
      const put = await peakDuring('put');
      syncDisks();
      const get = await peakDuring('get');
      const f: StreamFigures = {
        server: name,
        size: options.streamSize,
        baselineMiB,
        putMBps: options.streamSize / put.result.seconds / 1e6,
        putPeakMiB: put.peakMiB,
        putOk: put.result.verified,
        getMBps: options.streamSize / get.result.seconds / 1e6,
        getPeakMiB: get.peakMiB,
        getOk: get.result.verified,
        otherCpu: [put.otherCpu, get.otherCpu],
      };
      figures.push(f);
      log(
        `  ${name} stream ${formatSize(options.streamSize)}: PUT ${num(f.putMBps)} MB/s (status ${put.result.status}), GET ${num(f.getMBps)} MB/s (status ${get.result.status}, ${get.result.verified ? 'hash ok' : 'HASH/LENGTH WRONG'})`,
      );
    } finally {
      await server.stop();
      running.delete(server);
      await rm(dir, { recursive: true, force: true });
    }
  }
  return figures;
}

function streamTable(figures: StreamFigures[]): string {
  const header = [
    'stream',
    'size',
    'RSS idle MiB',
    'PUT MB/s',
    'peak RSS during PUT MiB',
    'GET MB/s',
    'peak RSS during GET MiB',
    'other cpu% put/get',
    'checks',
  ];
  const rows = figures.map((f) => [
    f.server,
    formatSize(f.size),
    num(f.baselineMiB),
    num(f.putMBps),
    num(f.putPeakMiB),
    num(f.getMBps),
    num(f.getPeakMiB),
    `${f.otherCpu[0].toFixed(0)}/${f.otherCpu[1].toFixed(0)}`,
    f.putOk && f.getOk ? 'ok' : `FAILED (put ${f.putOk ? 'ok' : 'failed'}, get ${f.getOk ? 'ok' : 'failed'})`,
  ]);
  return formatTable(header, rows);
}

/** Summarises the main-thread profile of the larder process `pid` (files are CPU.date.time.PID.THREAD.seq.cpuprofile; thread 0 is the main thread, the others are tsx's loader thread). */
async function profileSummary(name: ServerName, pid: number, options: BenchOptions): Promise<void> {
  if (name !== 'node' || !options.profileDir) return;
  const main = (await readdir(options.profileDir)).find((f) => f.endsWith('.cpuprofile') && f.includes(`.${pid}.0.`));
  if (main) log(`\n${summarize(join(options.profileDir, main), 30)}\n`);
  else log(`no main-thread profile of larder ${pid} in ${options.profileDir}`);
}

function printSetup(options: BenchOptions, pinning: Pinning): void {
  const nginxVersion = spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim();
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `larder bench${options.quick ? ' (quick)' : ''}: ${availableParallelism()}× ${cpu}, node ${process.version}, ${nginxVersion}`,
  );
  console.log(
    `  ${options.seconds} s measured (+${options.warmupSeconds} s warm-up) per run${options.repeat > 1 ? `, best of ${options.repeat}` : ''}; sizes ${options.sizes.map(formatSize).join(', ')}; ` +
      `connections ${options.connections.join(', ')}; ${options.blobCount} distinct blobs for GET hits and re-uploads`,
  );
  console.log(
    pinning.server === undefined
      ? '  no CPU pinning (taskset missing, 1 CPU, or BENCH_PIN=0): server and load generator share the cores'
      : `  server pinned to CPU ${pinning.server}, load generator (autocannon, own process) to CPU ${pinning.generator}`,
  );
  console.log(
    `  servers: ${options.servers.join(', ')} (bench/servers.ts); larder on a disk store; nginx: one process (master_process off, 1 worker), WebDAV PUT, sendfile on`,
  );
  if (options.before) console.log(`  before: the larder checkout at ${options.before}`);
  if (options.profileDir) console.log(`  larder CPU profiles: ${options.profileDir}`);
  console.log('');
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error((err as Error)?.stack ?? String(err));
    process.exit(1);
  },
);

/**
 * The gRPC frontend, remote execution and the S3-backed stores, measured in the same run as the HTTP figures
 * above. False when the execution bench failed (a failed or cached Execute, a build that did not run where meant).
 */
async function otherFrontends(options: BenchOptions): Promise<boolean> {
  let ok = true;
  if (options.grpc) {
    log('gRPC executor…');
    const settings = options.quick ? { streamBytes: 64 * 1024 * 1024, findMissingCalls: 5, batchCalls: 5 } : {};
    if (options.before === null && bazelRemoteFound()) {
      const { larder, peer } = await runGrpcSideBySide(settings, options.quick ? 1 : 2);
      console.log(`\ngRPC (larder executor and bazel-remote, disk stores)\n${formatGrpcSideBySide(larder, peer)}`);
    } else if (options.before === null) {
      const rows = await runGrpcBench(settings);
      console.log(`\ngRPC (larder executor, disk store; bazel-remote not found)\n${formatGrpcRows(rows)}`);
    } else {
      const now: GrpcBenchRow[][] = [];
      const before: GrpcBenchRow[][] = [];
      for (let round = 0; round < (options.quick ? 1 : 2); round++) {
        now.push(await runGrpcBench(settings));
        before.push(await runGrpcBench({ ...settings, root: options.before }));
      }
      console.log(
        `\ngRPC (larder executor, disk store), this checkout against ${options.before}\n${formatGrpcComparison(now, before)}`,
      );
    }
  }
  if (process.env.BENCH_EXECUTION !== '0') {
    log('remote execution…');
    try {
      const rows = await runExecutionBench({ quick: options.quick, profileDir: options.profileDir });
      console.log(`\nRemote execution (larder executor, disk store, --concurrency 8)\n${formatExecutionRows(rows)}`);
    } catch (err) {
      console.log(`\nRemote execution FAILED: ${(err as Error)?.stack ?? String(err)}`);
      ok = false;
    }
    log('remote persistent workers…');
    try {
      const rows = await runPersistentWorkerBench(options.quick ? 1 : 2);
      console.log(`\nRemote persistent workers (real Bazel, cold builds)\n${formatPersistentRows(rows)}`);
    } catch (err) {
      console.log(`\nRemote persistent workers FAILED: ${(err as Error)?.stack ?? String(err)}`);
      ok = false;
    }
    log('docker runner…');
    try {
      const rows = await runDockerBench({ quick: options.quick });
      console.log(`\nDocker runner: per-action overhead against local (/bin/true)\n${formatDockerRows(rows)}`);
    } catch (err) {
      console.log(`\nDocker runner FAILED: ${(err as Error)?.stack ?? String(err)}`);
      ok = false;
    }
    log('executor fleet (Redis)…');
    try {
      const figures = await runFleetBench(
        options.quick ? { actions: 200, latencyActions: 50 } : { actions: 1000, latencyActions: 200 },
      );
      console.log(
        `\nExecutor fleet: one frontend + Redis + two workers vs the in-memory single process (trivial actions)\n${fleetTable(figures)}`,
      );
    } catch (err) {
      console.log(`\nExecutor fleet FAILED: ${(err as Error)?.stack ?? String(err)}`);
      ok = false;
    }
  }
  if (process.env.BENCH_ASSET !== '0') {
    log('remote asset (cached FetchBlob)…');
    try {
      const rows = await runAssetBench({ quick: options.quick, profileDir: options.profileDir });
      console.log(
        `\nRemote Asset API: cached FetchBlob against FindMissingBlobs (larder executor)\n${formatAssetRows(rows)}`,
      );
    } catch (err) {
      console.log(`\nRemote Asset API FAILED: ${(err as Error)?.stack ?? String(err)}`);
      ok = false;
    }
  }
  if (options.s3) {
    log('s3 and tiered stores…');
    const work = await mkdtemp(join(tmpdir(), 'larder-bench-s3-'));
    try {
      const rows = await runS3Bench(work, options.quick ? { seconds: 1 } : {});
      console.log(`\nHTTP edge on S3 (s3rver on loopback) and on tiered(memory, S3)\n${formatS3Rows(rows)}`);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    log('FindMissingBlobs across hosts (bucket index)…');
    const figures = await runFindMissingBench(options.quick ? { sizes: [100, 1_000] } : {});
    console.log(
      `\nFindMissingBlobs through tiered(disk, s3) at a frontend that did not upload the blobs, with and without --bucket-index\n${formatFindMissingRows(figures)}`,
    );
  }
  return ok;
}
