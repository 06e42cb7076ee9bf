/**
 * Remote-execution figures for `larder executor`, all against real components on loopback:
 *
 *   0. The floor, in the same run: what a small Node process (spawn-floor.mjs) pays to start `/bin/true` (and,
 *      for the sandboxed rows, the same bubblewrap command line the executor uses) and wait for it, plus one
 *      action-cache write to a disk store; the executor's rows are compared with it.
 *   1. Execute → result overhead: `/bin/true` with a small, already staged input root, at concurrency 1 and 8,
 *      through a real executor process, with the sandbox on and off in the same run (what the sandbox adds).
 *      Every request must really run (distinct salts: no cache hit, no merging) and succeed; anything else
 *      fails the bench.
 *   2. Input staging of a 10,000-file tree in-process (stageInputs, FileCache, storeCas over a disk store from
 *      openStore), cold (every file fetched) and warm (hard links only).
 *   3. The test workspace's //:remote_outputs built by real Bazel locally (in Bazel's own linux-sandbox, with
 *      its persistent workers) and remotely (in larder's sandbox), alternating, every timed build cold (a fresh
 *      --action_env nonce each).
 *
 *   import { runExecutionBench, formatExecutionRows } from './execution.ts';
 *   console.log(formatExecutionRows(await runExecutionBench({ quick: true })));
 *
 * Or on its own: `npx tsx bench/execution.ts [--quick]` (BENCH_BAZEL=0 skips the Bazel builds; BENCH_PROFILE=1
 * profiles the executor during the Execute measurement; BENCH_BEFORE=path of another larder checkout, built, runs
 * its executor through the same Execute rows, interleaved block by block with this one's, and prints both with
 * their ratio; BENCH_EXEC_ACTIONS=N measures N Executes per row instead of 1,000 (100 quick)).
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { blobKey, type Digest, parseDigest } from '../shared/digest.ts';
import {
  ActionResultSchema,
  ActionSchema,
  CommandSchema,
  type Digest as DigestMessage,
  DirectorySchema,
  type ExecuteResponse,
} from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { openStore } from '../shared/storage/from-config.ts';
import type { BlobStore } from '../shared/storage/store.ts';
import { Bubblewrap, findBubblewrap } from '../executor/runner/sandbox/bubblewrap.ts';
import { installedBun } from '../executor/runner/spawner/spawner.ts';
import { writeActionResult } from '../executor/services/action-cache-writes.ts';
import { FileCache } from '../executor/worker/file-cache.ts';
import { FileSystemThread } from '../executor/worker/file-system-thread.ts';
import { preciseWallClockMs } from '../executor/worker/precise-wall-clock.ts';
import { stageInputs, type StageStats } from '../executor/worker/stage-inputs.ts';
import { storeCas } from '../executor/worker/store-cas.ts';
import { mapLimit } from '../shared/map-limit.ts';
import { BazelWorkspace, bazelStatus, describeRun, remoteExecutionFlags, type BazelRun } from '../test/bazel/bazel.ts';
import { ActionFixture } from '../test/executor/execution/fixture.ts';
import { clientsFor, reachableTempDir, sha256 } from '../test/executor/helpers.ts';
import { spawnTracked, stopChild } from './proc.ts';
import { instantsOf, type Instants, PHASES, phaseMediansMs } from './phases.ts';
import { callsPerSecond, formatSpread, interleave, measure, percentile, percentileOf, spread } from './interleave.ts';
import { printProfile } from './profile-summary.ts';
import { formatTable, num } from './table.ts';

export interface ExecutionBenchOptions {
  /** Measured Executes per concurrency level (default 1,000; 100 quick). */
  actions?: number;
  concurrencies?: number[];
  /** Files in the input root of every measured action (default 20). */
  inputFiles?: number;
  /** The staged tree: directories × files per directory (default 100 × 100), and runs of each (default 3; 1 quick). */
  stageDirectories?: number;
  stageFilesPerDirectory?: number;
  stageRuns?: number;
  /** Local/remote build pairs (default 2; 1 quick); 0 skips Bazel. */
  bazelRounds?: number;
  quick?: boolean;
  /** Runs the executor of the Execute measurement under --cpu-prof into this folder and prints its top functions. */
  profileDir?: string | null;
  /** Executes per block of the interleaving (default 50; 25 quick). */
  blockActions?: number;
  /**
   * Another larder checkout, built (BENCH_BEFORE): its executor runs the same Execute rows in the same run,
   * interleaved block by block with this checkout's, for before/after figures.
   */
  before?: string;
}

export interface ExecuteRow {
  sandbox: 'on' | 'off';
  concurrency: number;
  actions: number;
  p50Ms: number;
  p99Ms: number;
  actionsPerSecond: number;
  /** CPU of the executor process (not of the commands it runs) per action, in µs. */
  executorCpuUs: number;
  /** Where an action's time goes: the median of each phase (PHASES), in ms. */
  phaseP50Ms: number[];
  /** Each A-B-B-A quad's own figures, whose spread between quads is the noise a before/after ratio carries. */
  quads: Array<{ p50Ms: number; actionsPerSecond: number }>;
  /**
   * The Node floor measured in blocks interleaved with this row's (spawn p50 + write p50 over those blocks), and this
   * row's p50 ÷ that quad's floor, per quad; absent where the floor cannot run (no bubblewrap for the sandboxed row).
   */
  floor?: { p50Ms: number; quadRatios: number[] };
}

/** The floor at one concurrency: a small process spawning the command, plus one action-cache write. */
export interface FloorRow {
  sandbox: 'on' | 'off';
  /**
   * What the spawning process runs on: Node (the yardstick, which the ×floor column uses) or Bun, which
   * the executor's spawner runs on where npm installed it (spawner.ts).
   */
  spawner: 'node' | 'bun';
  concurrency: number;
  spawnP50Ms: number;
  spawnP99Ms: number;
  /** Commands per second the spawning process reached. */
  spawnsPerSecond: number;
  /** One ActionResult put into a fresh disk store, at the same concurrency. */
  acWriteP50Ms: number;
  acWriteP99Ms: number;
}

export interface StagingRow {
  run: 'cold' | 'warm';
  files: number;
  /** Best of the runs. */
  ms: number;
  filesPerSecond: number;
  fetchedFiles: number;
  linked: number;
}

export interface BazelRow {
  round: number;
  localMs: number;
  remoteMs: number;
  /** Bazel's process summaries ("15 processes: 3 internal, 12 remote"). */
  localSummary: string;
  remoteSummary: string;
}

export interface ExecutionRows {
  floor: FloorRow[];
  execute: ExecuteRow[];
  /** The same rows from the `before` checkout's executor, measured interleaved with `execute`. */
  before?: ExecuteRow[];
  staging: StagingRow[];
  bazel: BazelRow[];
  /** Why the Bazel builds did not run, when they did not. */
  bazelSkipped?: string;
}

/** Upper bound for one Execute; a hung executor fails the bench instead of stalling it. */
const EXECUTE_TIMEOUT_MS = 60_000;
const TARGETS = ['//:remote_outputs'];
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export async function runExecutionBench(options: ExecutionBenchOptions = {}): Promise<ExecutionRows> {
  const quick = options.quick ?? false;
  const profileDir = options.profileDir ?? null;
  if (profileDir !== null) await mkdir(profileDir, { recursive: true });
  const roots = [{ label: 'now', root: REPO_ROOT }];
  if (options.before !== undefined) roots.push({ label: 'before', root: resolve(options.before) });
  const executeOptions = {
    actions: options.actions ?? (quick ? 100 : 1000),
    blockActions: options.blockActions ?? (quick ? 25 : 50),
    concurrencies: options.concurrencies ?? [1, 8],
    inputFiles: options.inputFiles ?? 20,
    profileDir,
    roots,
  };
  const floor = await measureFloor(executeOptions.actions, executeOptions.concurrencies);
  const on = await measureExecute({ ...executeOptions, sandbox: 'on' });
  const off = await measureExecute({ ...executeOptions, sandbox: 'off', profileDir: null });
  const execute = [...on[0]!, ...off[0]!];
  const before = options.before === undefined ? undefined : [...on[1]!, ...off[1]!];
  const staging = await measureStaging(
    options.stageDirectories ?? 100,
    options.stageFilesPerDirectory ?? 100,
    options.stageRuns ?? (quick ? 1 : 3),
  );
  const measured = { floor, execute, before, staging };
  const bazelRounds = options.bazelRounds ?? (quick ? 1 : 2);
  const bazel = bazelStatus();
  if (bazelRounds === 0) return { ...measured, bazel: [], bazelSkipped: 'Bazel builds skipped (0 rounds asked for)' };
  if (!bazel.available)
    return {
      ...measured,
      bazel: [],
      bazelSkipped: `Bazel not available (${bazel.reason}): local vs remote build skipped`,
    };
  return { ...measured, bazel: await measureBazel(bazelRounds) };
}

export function formatExecutionRows(rows: ExecutionRows): string {
  const floorRows = rows.floor.map((f) => [
    `floor: ${f.spawner === 'node' ? 'Node' : 'Bun'} spawns ${f.sandbox === 'on' ? 'bwrap /bin/true' : '/bin/true'} + AC write, concurrency ${f.concurrency}`,
    '',
    `${num(f.spawnP50Ms + f.acWriteP50Ms)} (${num(f.spawnP50Ms)} + ${num(f.acWriteP50Ms)})`,
    `${num(f.spawnP99Ms + f.acWriteP99Ms)}`,
    num(f.spawnsPerSecond),
    '',
    '',
  ]);
  const executeRows = rows.execute.map((r) => [
    `executor, sandbox ${r.sandbox}, concurrency ${r.concurrency}`,
    r.actions,
    num(r.p50Ms),
    num(r.p99Ms),
    num(r.actionsPerSecond),
    num(r.executorCpuUs),
    r.floor === undefined ? '' : `${ratio(r.p50Ms, r.floor.p50Ms)} of ${num(r.floor.p50Ms)}`,
    r.floor === undefined ? '' : formatSpread(spread(r.floor.quadRatios)),
  ]);
  const execute = formatTable(
    [
      'Execute /bin/true (warm inputs)',
      'actions',
      'p50 ms',
      'p99 ms',
      'actions/s',
      'executor CPU µs/action',
      'p50 ×floor (interleaved, ms)',
      '÷ floor per quad',
    ],
    [...floorRows.map((row) => [...row, '']), ...executeRows],
  );
  const phaseRows = (execute: ExecuteRow[], label: string) =>
    execute.map((r) => [
      `executor${label}, sandbox ${r.sandbox}, concurrency ${r.concurrency}`,
      ...r.phaseP50Ms.map((ms) => num(ms)),
    ]);
  const phases = formatTable(
    ['p50 ms of each phase', ...PHASES.map((phase) => phase.name)],
    rows.before === undefined
      ? phaseRows(rows.execute, '')
      : [...phaseRows(rows.execute, ' (now)'), ...phaseRows(rows.before, ' (before)')],
  );
  const staging = formatTable(
    ['stageInputs', 'files', 'ms (best)', 'files/s', 'fetched', 'linked'],
    rows.staging.map((r) => [r.run, r.files, num(r.ms), num(r.filesPerSecond), r.fetchedFiles, r.linked]),
  );
  const added = rows.execute
    .filter((r) => r.sandbox === 'on')
    .map((on) => {
      const off = rows.execute.find((r) => r.sandbox === 'off' && r.concurrency === on.concurrency);
      return off === undefined
        ? ''
        : `concurrency ${on.concurrency}: +${num(on.p50Ms - off.p50Ms)} ms p50, +${num(on.p99Ms - off.p99Ms)} ms p99`;
    })
    .filter(Boolean);
  const lines = [
    execute,
    "floor: a small Node process (bench/spawn-floor.mjs) spawning the command and waiting for it, plus one ActionResult put into a fresh disk store (p50: spawn + write); the sandboxed floor spawns the same bwrap command line the executor does; floor actions/s: spawns alone. The Bun rows are the same script on Bun, which the executor starts commands from (its spawner). The floor rows above ran before the executors; p50 ×floor is against the Node floor measured again in blocks of its own, taking turns with the executors' blocks (A-B-B-A), whose p50 it shows, and ÷ floor per quad is each quad's own ratio: its spread is the noise.",
    `the sandbox adds: ${added.join('; ')}`,
    '',
    phases,
    "phases: from the worker's ExecutedActionMetadata timestamps (microsecond resolution, on the wall clock) and the client's send and receive times; each column is its own median, so they need not add up to the p50.",
    '',
    staging,
    '',
  ];
  if (rows.before !== undefined) lines.push(formatBeforeAfter(rows.execute, rows.before), '');
  if (rows.bazel.length === 0) {
    lines.push(rows.bazelSkipped ?? 'no Bazel builds');
  } else {
    const bazelRows = rows.bazel.map((r) => [
      `round ${r.round}`,
      num(r.localMs / 1000),
      num(r.remoteMs / 1000),
      ratio(r.remoteMs, r.localMs),
      r.localSummary,
      r.remoteSummary,
    ]);
    const sum = (pick: (r: BazelRow) => number) => rows.bazel.reduce((total, r) => total + pick(r), 0);
    if (rows.bazel.length > 1)
      bazelRows.push([
        'all',
        num(sum((r) => r.localMs) / 1000),
        num(sum((r) => r.remoteMs) / 1000),
        ratio(
          sum((r) => r.remoteMs),
          sum((r) => r.localMs),
        ),
        '',
        '',
      ]);
    lines.push(
      formatTable(
        [
          'bazel build //:remote_outputs (cold)',
          'local s',
          'remote s',
          'remote/local',
          'local processes',
          'remote processes',
        ],
        bazelRows,
      ),
    );
  }
  return lines.join('\n');
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}×`;
}

/** This checkout's Execute rows against the `before` checkout's, measured interleaved in one run. */
function formatBeforeAfter(now: ExecuteRow[], before: ExecuteRow[]): string {
  const body = now.map((r, i) => {
    const b = before[i]!;
    const perQuad = (pick: (q: ExecuteRow['quads'][number]) => number) =>
      formatSpread(spread(r.quads.map((q, n) => pick(q) / pick(b.quads[n]!))));
    return [
      `executor, sandbox ${r.sandbox}, concurrency ${r.concurrency}`,
      num(r.p50Ms),
      num(b.p50Ms),
      ratio(r.p50Ms, b.p50Ms),
      perQuad((q) => q.p50Ms),
      num(r.actionsPerSecond),
      num(b.actionsPerSecond),
      ratio(r.actionsPerSecond, b.actionsPerSecond),
      perQuad((q) => q.actionsPerSecond),
      num(r.executorCpuUs),
      num(b.executorCpuUs),
    ];
  });
  return [
    formatTable(
      [
        'Execute: now against before',
        'p50 ms now',
        'before',
        'now ÷ before',
        '÷ per quad: median (low–high)',
        'actions/s now',
        'before',
        'now ÷ before',
        '÷ per quad',
        'executor CPU µs/action now',
        'before',
      ],
      body,
    ),
    "before/after: both executors ran in this run, in blocks of Executes in A-B-B-A order (interleave.ts); ÷ per quad is each quad's own ratio, and its spread the noise.",
  ].join('\n');
}

// ---------------------------------------------------------------------------
// 0. The floor

const SPAWN_FLOOR = fileURLToPath(new URL('./spawn-floor.mjs', import.meta.url));

/** What the floor runs: the command (bare, or in the executor's bwrap sandbox), as whom, and its action-cache store. */
interface Floor {
  /** The command line for the sandbox setting; null: bubblewrap is not installed. */
  argv(sandbox: 'on' | 'off'): string[] | null;
  /** As the executor runs commands: as root, a uid of the slot's own (the first of the default --run-as-uids range). */
  user: { uid: number; gid: number } | null;
  store: BlobStore;
  close(): Promise<void>;
}

async function openFloor(dir: string): Promise<Floor> {
  const store = await openStore({ kind: 'disk', path: join(dir, 'store'), maxBytes: 4 * 2 ** 30 });
  const execRoot = join(dir, 'root');
  await mkdir(execRoot, { mode: 0o777, recursive: true });
  const user = process.getuid?.() === 0 ? { uid: 1_900_000_000, gid: 1_900_000_000 } : null;
  const bwrap = findBubblewrap();
  const sandboxed =
    bwrap === null
      ? null
      : new Bubblewrap(bwrap, []).argv(
          { execRoot, cwd: execRoot, network: false, rootIsInput: false },
          ['/bin/true'],
          user,
        );
  return {
    argv: (sandbox) => (sandbox === 'off' ? ['/bin/true'] : sandboxed),
    user,
    store,
    async close() {
      await store.close?.();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function measureFloor(count: number, concurrencies: number[]): Promise<FloorRow[]> {
  const floor = await openFloor(reachableTempDir('larder-bench-floor-'));
  try {
    const bun = installedBun();
    const runtimes: Array<['node' | 'bun', string]> = [['node', process.execPath]];
    if (bun !== null) runtimes.push(['bun', bun]);
    const rows: FloorRow[] = [];
    for (const concurrency of concurrencies) {
      const writes = await actionCacheWrites(floor.store, count, concurrency, 'floor');
      for (const sandbox of ['off', 'on'] as const) {
        const argv = floor.argv(sandbox);
        if (argv === null) continue;
        for (const [spawner, runtime] of runtimes) {
          const spawned = await spawnFloor(runtime, argv, count, concurrency, sandbox === 'on' ? floor.user : null);
          rows.push({
            sandbox,
            spawner,
            concurrency,
            spawnP50Ms: percentile(spawned.latenciesMs, 0.5),
            spawnP99Ms: percentile(spawned.latenciesMs, 0.99),
            spawnsPerSecond: count / spawned.seconds,
            acWriteP50Ms: percentile(writes, 0.5),
            acWriteP99Ms: percentile(writes, 0.99),
          });
        }
      }
    }
    return rows;
  } finally {
    await floor.close();
  }
}

/** Runs spawn-floor.mjs on `runtime` (plain Node, no loader; or Bun) and returns its sorted latencies. */
async function spawnFloor(
  runtime: string,
  argv: string[],
  count: number,
  concurrency: number,
  user: { uid: number; gid: number } | null,
): Promise<{ latenciesMs: number[]; seconds: number }> {
  const child = spawnTracked(runtime, [SPAWN_FLOOR, JSON.stringify({ argv, count, concurrency, user })], undefined, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await bounded(
    new Promise<number | null>((resolve) => child.once('exit', resolve)),
    120_000,
    'the spawn floor',
  ).catch(async (err: unknown) => {
    await stopChild(child);
    throw err;
  });
  if (code !== 0) throw new Error(`spawn-floor.mjs exited ${code}: ${stderr}`);
  const result = JSON.parse(stdout) as { latenciesMs: number[]; seconds: number };
  result.latenciesMs.sort((a, b) => a - b);
  return result;
}

/** `count` ActionResults (the size a trivial action's is), new keys by `prefix`, written `concurrency` at a time; sorted ms. */
async function actionCacheWrites(
  store: BlobStore,
  count: number,
  concurrency: number,
  prefix: string,
): Promise<number[]> {
  const result = create(ActionResultSchema, {
    exitCode: 0,
    executionMetadata: { worker: 'bench/0/0', queuedTimestamp: timestampFromDate(new Date()) },
  });
  const latencies: number[] = [];
  await mapLimit(
    Array.from({ length: count }, (_, i) => i),
    concurrency,
    async (i) => {
      const started = performance.now();
      await writeActionResult(store, blobKey('', 'ac', sha256(`${prefix}-${concurrency}-${i}`)), result);
      latencies.push(performance.now() - started);
    },
  );
  return latencies.sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------
// 1. Execute overhead

/** The interleaving's name for the Node floor's blocks (beside the executors' labels, `now` and `before`). */
const FLOOR = 'floor';

/** One executor of the Execute measurement: this checkout's, or another's (BENCH_BEFORE), with its own store. */
interface ExecuteTarget {
  label: string;
  executor: Executor;
  clients: ReturnType<typeof clientsFor>;
  fixture: ActionFixture;
  /** Uploads `count` actions of the bench's command, each with its own salt (so each runs), and returns their digests. */
  actionsFor(prefix: string, count: number): Promise<DigestMessage[]>;
}

/**
 * Each checkout's executor, with the sandbox `o.sandbox`, at every concurrency: blocks of `o.blockActions`
 * Executes, the executors interleaved in A-B-B-A order (interleave.ts), so drift on the machine falls on each alike.
 * Returns each root's rows, in the order of `roots`.
 */
async function measureExecute(o: {
  actions: number;
  blockActions: number;
  concurrencies: number[];
  inputFiles: number;
  profileDir: string | null;
  sandbox: 'on' | 'off';
  roots: Array<{ label: string; root: string }>;
}): Promise<ExecuteRow[][]> {
  const dir = reachableTempDir('larder-bench-exec-');
  const targets: ExecuteTarget[] = [];
  const floor = await openFloor(join(dir, 'floor'));
  try {
    for (const [i, { label, root }] of o.roots.entries()) {
      // Only this checkout's executor is profiled (the first root).
      const nodeFlags = o.profileDir === null || i > 0 ? [] : ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`];
      const executor = await startBenchExecutor(join(dir, label), nodeFlags, ['--sandbox', o.sandbox], root);
      const clients = clientsFor(executor.address);
      const fixture = new ActionFixture(clients);
      targets.push({ label, executor, clients, fixture, actionsFor: await actionMaker(fixture, o.inputFiles) });
    }
    // Unmeasured: stages the inputs into each executor's file cache and warms its JIT.
    for (const t of targets) await executeAll(t.fixture, await t.actionsFor('warm-up', 50), 8);

    const rows: ExecuteRow[][] = targets.map(() => []);
    // The floor takes its turn in the blocks too: measured once, before the rows, it and the executor drifted apart
    // with the machine (Node's spawn of /bin/true took 4.7 ms in one run and 6.7 in another, while the executor's p50
    // went from 10.0 to 7.3 ms), and the ratio read 1.91× in one run and 0.96× in the other.
    const floorArgv = floor.argv(o.sandbox);
    const floorUser = o.sandbox === 'on' ? floor.user : null;
    for (const concurrency of o.concurrencies) {
      const byLabel = new Map(targets.map((t) => [t.label, t]));
      const lives = new Map(targets.map((t) => [t.label, [] as Instants[]]));
      const quads = Math.max(1, Math.ceil(o.actions / (2 * o.blockActions)));
      /** The floor's action-cache writes, by quad (its tallies hold its spawns). */
      const floorWrites: number[][] = Array.from({ length: quads }, () => []);
      const result = await interleave(
        [...targets.map((t) => t.label), ...(floorArgv === null ? [] : [FLOOR])],
        quads,
        async (label, block, tally) => {
          if (label === FLOOR) {
            const spawned = await spawnFloor(process.execPath, floorArgv!, o.blockActions, concurrency, floorUser);
            tally.latencies.push(...spawned.latenciesMs);
            tally.calls += o.blockActions;
            const writes = await actionCacheWrites(
              floor.store,
              o.blockActions,
              concurrency,
              `c${concurrency}-b${block}`,
            );
            floorWrites[Math.floor(block / 2)]!.push(...writes);
            return;
          }
          const t = byLabel.get(label)!;
          const digests = await t.actionsFor(`c${concurrency}-b${block}`, o.blockActions);
          let executed: Executed[] = [];
          await measure(t.executor.pid, tally, digests.length, async () => {
            executed = await executeAll(t.fixture, digests, concurrency);
          });
          tally.latencies.push(...executed.map((e) => e.ms));
          lives.get(label)!.push(...executed.map((e) => e.instants));
        },
      );
      const floorP50 = (spawns: number[], writes: number[]) => percentileOf(spawns, 0.5) + percentileOf(writes, 0.5);
      for (const [i, t] of targets.entries()) {
        const total = result.totals[t.label]!;
        const interleavedFloor =
          floorArgv === null
            ? {}
            : {
                floor: {
                  p50Ms: floorP50(result.totals[FLOOR]!.latencies, floorWrites.flat()),
                  quadRatios: result.quads.map(
                    (q, quad) =>
                      percentileOf(q[t.label]!.latencies, 0.5) / floorP50(q[FLOOR]!.latencies, floorWrites[quad]!),
                  ),
                },
              };
        rows[i]!.push({
          sandbox: o.sandbox,
          concurrency,
          actions: total.calls,
          p50Ms: percentileOf(total.latencies, 0.5),
          p99Ms: percentileOf(total.latencies, 0.99),
          actionsPerSecond: callsPerSecond(total),
          executorCpuUs: total.cpuNs / 1000 / total.calls,
          phaseP50Ms: phaseMediansMs(lives.get(t.label)!),
          quads: result.quads.map((q) => ({
            p50Ms: percentileOf(q[t.label]!.latencies, 0.5),
            actionsPerSecond: callsPerSecond(q[t.label]!),
          })),
          ...interleavedFloor,
        });
      }
    }
    return rows;
  } finally {
    for (const t of targets) {
      t.clients.close();
      await t.executor.stop();
    }
    await floor.close();
    await rm(dir, { recursive: true, force: true });
    if (o.profileDir !== null && targets.length > 0) printProfile(o.profileDir, targets[0]!.executor.pid);
  }
}

/** Uploads the bench's input root (`inputFiles` small files) and command; returns a maker of salted actions. */
async function actionMaker(fixture: ActionFixture, inputFiles: number): Promise<ExecuteTarget['actionsFor']> {
  const inputs = Object.fromEntries(
    Array.from({ length: inputFiles }, (_, i) => [`input-${i}.txt`, `input file ${i}\n`.repeat(10)]),
  );
  const inputRoot = await fixture.tree(inputs);
  const [commandDigest] = await fixture.upload(
    toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/true'] })),
  );
  // Actions differing only by salt: each is its own cache key, so each Execute runs the command.
  return (prefix, count) =>
    fixture.upload(
      ...Array.from({ length: count }, (_, i) =>
        toBinary(
          ActionSchema,
          create(ActionSchema, { commandDigest, inputRootDigest: inputRoot, salt: Buffer.from(`${prefix}-${i}`) }),
        ),
      ),
    );
}

/** `url` is grpc://127.0.0.1:PORT, for Bazel; `address` is 127.0.0.1:PORT, for clients. */
export interface Executor {
  url: string;
  address: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * A real `larder executor` process (bin/larder.js, as a user starts it) with its own store and work folder under
 * `dir`, which `nobody` can enter. Stopped by its PID (proc.ts also kills it if the bench dies first). `root` is the
 * larder checkout to run it from (another one, built, for before/after figures).
 */
export async function startBenchExecutor(
  dir: string,
  nodeFlags: string[] = [],
  extraArgs: string[] = [],
  root: string = REPO_ROOT,
): Promise<Executor> {
  const args = [
    'executor',
    '--listen',
    '127.0.0.1:0',
    '--log-level',
    'warn',
    '--store',
    `disk:${join(dir, 'store')}`,
    '--max-size',
    '4GiB',
    '--work-dir',
    join(dir, 'work'),
    '--concurrency',
    '8',
    ...extraArgs,
  ];
  const child = spawnTracked(process.execPath, [...nodeFlags, join(root, 'bin/larder.js'), ...args], undefined, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const url = await new Promise<string>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`the executor did not start within 30 s:\n${output}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      const match = /larder executor listening on (grpc:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        ready(match[1]!);
      }
    });
    child.once('exit', (code) => fail(new Error(`the executor exited (${code}):\n${output}`)));
  }).catch(async (err: unknown) => {
    await stopChild(child);
    throw err;
  });
  return { url, address: new URL(url).host, pid: child.pid!, stop: () => stopChild(child, 8000) };
}

/** One Execute: its latency (ms) and the instants of its life (ms since the epoch, see PHASES). */
interface Executed {
  ms: number;
  instants: Instants;
}

/** Executes every action with `concurrency` in flight. Throws at the first failure. */
async function executeAll(fixture: ActionFixture, digests: DigestMessage[], concurrency: number): Promise<Executed[]> {
  const executed: Executed[] = [];
  // The clock the worker's metadata uses: performance.timeOrigin + now() drifts from the wall clock, and a step
  // of the host's clock shows up as a phase of tens of ms (seen on this host).
  const epochMs = preciseWallClockMs;
  await mapLimit(digests, concurrency, async (digest) => {
    const sent = epochMs();
    const { response } = await bounded(fixture.execute(digest), EXECUTE_TIMEOUT_MS, `Execute ${digest.hash}`);
    const received = epochMs();
    checkExecuted(response, digest);
    executed.push({ ms: received - sent, instants: instantsOf(response, sent, received, `Execute ${digest.hash}`) });
  });
  return executed;
}

function checkExecuted(response: ExecuteResponse, digest: DigestMessage): void {
  const problems = [
    (response.status?.code ?? 0) !== 0 ? `status ${response.status?.code}: ${response.status?.message}` : '',
    response.result?.exitCode !== 0 ? `exit code ${response.result?.exitCode}` : '',
    response.cachedResult ? 'a cached result (the action did not run)' : '',
  ].filter(Boolean);
  if (problems.length > 0) throw new Error(`Execute ${digest.hash}: ${problems.join('; ')}`);
}

function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// 2. Input staging

async function measureStaging(directories: number, filesPerDirectory: number, runs: number): Promise<StagingRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'larder-bench-stage-'));
  const store = await openStore({ kind: 'disk', path: join(dir, 'store'), maxBytes: 4 * 2 ** 30 });
  const cas = storeCas(store, '');
  const thread = new FileSystemThread();
  const files = directories * filesPerDirectory;
  try {
    const rootDigest = await uploadTree(cas, directories, filesPerDirectory);
    const best = { cold: Infinity, warm: Infinity };
    let last: Record<'cold' | 'warm', StageStats> | undefined;
    for (let run = 0; run < runs; run++) {
      // A fresh cache per cold run, so every file comes from the store; the warm run reuses it.
      const cache = await FileCache.open({ dir: join(dir, `cache-${run}`), maxBytes: 2 ** 30 });
      const stage = async (kind: 'cold' | 'warm') => {
        const started = performance.now();
        const stats = await stageInputs({
          cas,
          cache,
          rootDigest,
          execRoot: join(dir, `exec-${kind}-${run}`),
          limits: { maxFiles: files, maxDirectories: directories + 1, maxBytes: Number.MAX_SAFE_INTEGER },
          thread,
        });
        best[kind] = Math.min(best[kind], performance.now() - started);
        const fetched = kind === 'cold' ? files : 0;
        if (stats.files !== files || stats.linked !== files || stats.fetchedFiles !== fetched) {
          throw new Error(
            `${kind} staging: ${stats.files} files, ${stats.linked} linked, ${stats.fetchedFiles} fetched; expected ${files}, ${files}, ${fetched}`,
          );
        }
        return stats;
      };
      last = { cold: await stage('cold'), warm: await stage('warm') };
      for (const path of [`exec-cold-${run}`, `exec-warm-${run}`, `cache-${run}`])
        await rm(join(dir, path), { recursive: true, force: true });
    }
    return (['cold', 'warm'] as const).map((run) => ({
      run,
      files,
      ms: best[run],
      filesPerSecond: files / (best[run] / 1000),
      fetchedFiles: last![run].fetchedFiles,
      linked: last![run].linked,
    }));
  } finally {
    await thread.close();
    await store.close?.();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Stores `directories` × `filesPerDirectory` distinct files of 200 B to ~4 KiB and their Directory protos; returns the root's digest. */
async function uploadTree(
  cas: ReturnType<typeof storeCas>,
  directories: number,
  filesPerDirectory: number,
): Promise<Digest> {
  const upload = async (bytes: Uint8Array) => {
    const digest = parseDigest(sha256(bytes), bytes.byteLength);
    await cas.uploadBytes(digest, bytes);
    return { hash: digest.hash, sizeBytes: BigInt(digest.sizeBytes) };
  };
  const subdirectories = await mapLimit(
    Array.from({ length: directories }, (_, d) => d),
    4,
    async (d) => {
      const names = Array.from({ length: filesPerDirectory }, (_, f) => `file-${String(f).padStart(4, '0')}.txt`);
      const files = await mapLimit(names, 16, async (name, f) => {
        const size = 200 + (((d * filesPerDirectory + f) * 397) % 3900);
        const bytes = Buffer.concat([Buffer.from(`${d}/${name}\n`), randomBytes(size)]);
        return { name, digest: await upload(bytes) };
      });
      return {
        name: `dir-${String(d).padStart(4, '0')}`,
        digest: await upload(toBinary(DirectorySchema, create(DirectorySchema, { files }))),
      };
    },
  );
  const root = await upload(toBinary(DirectorySchema, create(DirectorySchema, { directories: subdirectories })));
  return parseDigest(root.hash, root.sizeBytes);
}

// ---------------------------------------------------------------------------
// 3. Bazel, local vs remote

/** Bazel's own sandbox for local actions (and its persistent workers where the rules ask for them). */
const LOCAL_FLAGS = ['--spawn_strategy=worker,linux-sandbox'];

async function measureBazel(rounds: number): Promise<BazelRow[]> {
  const dir = reachableTempDir('larder-bench-bazel-');
  let executor: Executor | undefined;
  let ws: BazelWorkspace | undefined;
  try {
    executor = await startBenchExecutor(dir);
    ws = await BazelWorkspace.create();
    const remoteFlags = [...remoteExecutionFlags(executor.url), '--remote_default_exec_properties=OSFamily=Linux'];
    // Untimed: starts the Bazel server, loads the workspace, starts the local JSON worker and warms the
    // executor (JIT, input file cache of the sources), so the timed builds compare execution alone.
    await build(ws, 'local', LOCAL_FLAGS);
    await build(ws, 'remote', remoteFlags);
    const rows: BazelRow[] = [];
    for (let round = 1; round <= rounds; round++) {
      await ws.clean();
      const local = await build(ws, 'local', LOCAL_FLAGS);
      await ws.clean();
      const remote = await build(ws, 'remote', remoteFlags);
      rows.push({
        round,
        localMs: local.durationMs,
        remoteMs: remote.durationMs,
        localSummary: local.summary!.line,
        remoteSummary: remote.summary!.line,
      });
    }
    return rows;
  } finally {
    await ws?.shutdown();
    await executor?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One build that has nothing to reuse from earlier builds: a fresh nonce in every action's environment, and for
 * remote builds a fresh instance name too, since Starlark actions without use_default_shell_env (MakeTree,
 * UpperJson) never see --action_env and would otherwise be remote cache hits. Throws unless the build succeeded
 * where it was meant to run.
 */
export async function build(
  ws: BazelWorkspace,
  where: 'local' | 'remote',
  flags: string[],
  targets: string[] = TARGETS,
): Promise<BazelRun> {
  const nonce = randomBytes(8).toString('hex');
  const fresh = [`--action_env=BENCH_NONCE=${nonce}`, `--host_action_env=BENCH_NONCE=${nonce}`];
  if (where === 'remote') fresh.push(`--remote_instance_name=bench-${nonce}`);
  const run = await ws.build(targets, [...flags, ...fresh]);
  const summary = run.summary;
  if (run.exitCode !== 0 || summary === null) throw new Error(`${where} build failed:\n${describeRun(run)}`);
  const allRemote =
    summary.remoteCacheHit === 0 &&
    Object.keys(summary.other).length === 1 &&
    summary.other.remote === summary.nonInternal;
  if (where === 'remote' && !allRemote)
    throw new Error(`the remote build did not execute every action remotely: ${summary.line}`);
  if (where === 'local' && (summary.other.remote !== undefined || summary.remoteCacheHit > 0))
    throw new Error(`the local build used the executor: ${summary.line}`);
  return run;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const profileDir =
    process.env.BENCH_PROFILE === '1'
      ? process.env.BENCH_PROFILE_DIR || join(tmpdir(), `larder-bench-profiles-${Date.now()}`)
      : null;
  const bazelRounds = process.env.BENCH_BAZEL === '0' ? 0 : undefined;
  try {
    console.log(
      formatExecutionRows(
        await runExecutionBench({
          quick: process.argv.includes('--quick'),
          profileDir,
          bazelRounds,
          before: process.env.BENCH_BEFORE || undefined,
          actions: Number(process.env.BENCH_EXEC_ACTIONS) || undefined,
        }),
      ),
    );
  } catch (err) {
    console.error((err as Error)?.stack ?? String(err));
    process.exitCode = 1;
  }
}
