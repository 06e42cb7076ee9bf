/**
 * Fleet benchmark (issues 14, 18), standalone:
 * `npx tsx bench/fleet.ts [--actions N] [--latency-actions N] [--concurrency N]` (after `npm run build`: the
 * processes run dist/).
 *
 * Same run, same machine, same total worker concurrency (4):
 *   memory: one `larder executor` process, in-memory queue, one in-process worker at concurrency 4;
 *   redis:  one frontend (`--workers 0 --queue redis://…`) + a redis-server + two `larder worker` processes at
 *           concurrency 2 each.
 * For each: throughput of N distinct trivial actions (`/bin/true`, empty input root) submitted `concurrency` (8)
 * at a time,
 * and Execute → done latency of actions run one at a time (p50/p99): the difference is what Redis adds per action.
 * Both setups run at once and are measured in alternating blocks (A-B-B-A), so a drift in load weighs on both.
 * The fleet's Redis runs with appendonly and `appendfsync everysec`, as the README runs it (`--fsync always`: an
 * fsync before every write command's reply, as the test helper's Redis does).
 * Then a counting pass (a fresh frontend and two workers on the same Redis, each side through a counting proxy of
 * its own, bench/redis-tally.ts) counts what each action asks: Redis commands and round trips, frontend and
 * workers apart, and the gRPC calls the workers make to the frontend (its larder_grpc_calls_total), one at a time
 * and 8 in flight. Those counts are exact on a loaded machine, where the timings are not; `--count-only` runs
 * that pass alone (~20 s) and prints the commands by name.
 * The throughput blocks also give each process's CPU per action (the fleet's frontend, workers and redis-server;
 * the memory setup's one executor), which on a 2-core host is what bounds actions per second.
 * Prints a table; `bench/run.ts` can import `runFleetBench` and add it to `npm run bench`.
 *
 * `--load N` (issue 18) instead runs the load the fleet must not fall over under: N (10,000) concurrent Executes
 * of distinct trivial actions through one frontend with two workers, then 100 clients following one merged
 * action. It checks that every stream ends with a result, states the frontend's peak RSS and Redis's peak memory
 * against their bounds, and that nothing is left behind in Redis (leases, queued jobs, operation subscriptions).
 * Too slow for the test suite on a 2-core machine (2,000 at once already take minutes in fleet-load.test.ts).
 *
 * `--scheduler-only` measures the schedulers alone, in this process, without running anything: submit, a worker
 * slot takes the job and completes it at once, the submitter follows it to done (subscribe, get) as the
 * Execution service does. Against the in-memory scheduler and the Redis one (a fresh redis-server; the frontend
 * and the workers on connections of their own, as separate processes would be): what Redis itself adds per
 * action, which the end-to-end figures above bury under the cost of running the action on a loaded machine.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { parseArgs } from 'node:util';
import {
  ActionSchema,
  CommandSchema,
  DigestSchema,
  ExecuteResponseSchema,
  type ExecuteResponse,
  type Digest,
} from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Redis } from 'ioredis';
import { workerPlatform } from '../executor/reapi/platform.ts';
import { preciseWallClockMs } from '../executor/worker/precise-wall-clock.ts';
import { MemoryScheduler } from '../executor/scheduler/memory-scheduler.ts';
import { RedisScheduler } from '../executor/scheduler/redis/redis-scheduler.ts';
import type { Scheduler } from '../executor/scheduler/scheduler.ts';
import { createLogger } from '../shared/log.ts';
import { peakRssMiB } from '../test/helpers/proc.ts';
import { startRedis, type TestRedis } from '../test/helpers/redis.ts';
import { ActionFixture, finalResponse } from '../test/executor/execution/fixture.ts';
import {
  type Clients,
  clientsFor,
  digestOf,
  drain,
  reachableTempDir,
  startExecutorProcess,
} from '../test/executor/helpers.ts';
import { startFrontend, startWorker } from '../test/executor/fleet/fleet.ts';
import { job } from '../test/executor/scheduler/fixtures.ts';
import { cpuNanoseconds } from './proc.ts';
import { type RedisTally, startCountingProxy } from './redis-tally.ts';
import { instantsOf, type Instants, PHASES, phaseMediansMs } from './phases.ts';
import { formatTable, num } from './table.ts';

export interface FleetFigures {
  setup: string;
  /** Executes in flight while actionsPerSecond was measured. */
  concurrency: number;
  actionsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Median of each phase (bench/phases.ts) of the actions run one at a time, in ms. */
  phaseP50Ms: number[];
  /**
   * CPU per action of each of the setup's processes (all their threads; not the actions' own processes) while
   * actionsPerSecond was measured, in ms: on a small host the fleet's throughput is bounded by what it spends.
   */
  cpuMsPerAction?: Array<{ process: string; ms: number }>;
  /**
   * Means over the actions run one at a time, in ms: of outputs → done, and of the store's puts meanwhile
   * (larder_store_operation_seconds), which are the action-cache writes, in the memory executor itself or in the
   * fleet's frontend. In the fleet means add up: the difference is what carrying the write there cost. The memory
   * executor's workers answer before their write (writeFollowsAnswer): its put is not part of outputs → done.
   */
  outputsToDone?: { meanMs: number; putMeanMs: number; writeFollowsAnswer: boolean };
  /** What each action cost in requests, counted in a pass of its own (countFleet); absent for the memory row. */
  counted?: { serial: ActionCounts; loaded: ActionCounts };
}

/** Requests per action, counted exactly (bench/redis-tally.ts, the frontend's larder_grpc_calls_total). */
export interface ActionCounts {
  frontend: SideCounts;
  workers: SideCounts;
  /** gRPC calls the workers made to the frontend (CAS, action cache), per action. */
  grpcFromWorkers: number;
}

export interface SideCounts {
  /** Redis commands per action, background ones (BACKGROUND) left out. */
  commands: number;
  /** Redis round trips per action (redis-tally.ts says what one is), background ones included. */
  roundTrips: number;
  /** Commands per action by name (scripts by their scripts.ts name), background ones included. */
  byName: Map<string, number>;
}

/**
 * Commands sent on timers, not for an action: heartbeats (every 5 s), lease sweeps and stranded checks (every
 * second with the fleet's 3 s lease). Left out of the per-action command figure; their share of round trips is
 * small in a pass of a few seconds.
 */
const BACKGROUND = new Set(['heartbeat', 'sweep', 'stranded']);

export interface FleetBenchOptions {
  actions: number;
  latencyActions: number;
  /** Executes in flight at once for the throughput figure. Default 8. */
  concurrency?: number;
  /** The fleet Redis's appendfsync (runSchedulerBench). */
  fsync?: 'always' | 'everysec';
}

export async function runFleetBench(options: FleetBenchOptions): Promise<FleetFigures[]> {
  const memoryDir = reachableTempDir('larder-bench-memory-');
  const fleetDir = reachableTempDir('larder-bench-fleet-');
  const fsync = options.fsync ?? 'everysec';
  const redis = await startRedis({ args: ['--appendfsync', fsync] });
  let counted: FleetFigures['counted'];
  let figures: FleetFigures[];
  try {
    // Both run at once, measured in alternating blocks (below): a drift in the machine's load then weighs on both
    // alike, where measuring one setup after the other put it all on one side.
    const executor = await startExecutorProcess([
      '--store',
      `disk:${memoryDir}/store`,
      '--workers',
      '1',
      '--concurrency',
      '4',
      '--metrics-listen',
      '127.0.0.1:0',
    ]);
    const front = await startFrontend({
      redis: redis.url,
      store: `${fleetDir}/store`,
      args: ['--metrics-listen', '127.0.0.1:0'],
    });
    const workers = await Promise.all(
      [0, 1].map(() => startWorker({ redis: redis.url, frontend: front.url, concurrency: 2 })),
    );
    try {
      figures = await measureSideBySide(
        [
          {
            setup: 'memory: 1 process, 1 worker × 4',
            writeFollowsAnswer: true,
            address: `127.0.0.1:${executor.port}`,
            metricsUrl: await metricsUrlOf(executor),
            processes: [{ name: 'executor', pid: executor.pid }],
          },
          {
            setup: `redis (appendfsync ${fsync}): 1 frontend + 2 workers × 2`,
            address: `127.0.0.1:${front.port}`,
            metricsUrl: await metricsUrlOf(front),
            processes: [
              { name: 'frontend', pid: front.pid },
              ...workers.map((w, i) => ({ name: `worker ${i + 1}`, pid: w.pid })),
              { name: 'redis-server', pid: redis.pid() },
            ],
          },
        ],
        options,
      );
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
      await front.stop();
      await executor.stop();
    }
    counted = await countFleet(redis, `${fleetDir}/store`);
  } finally {
    await redis.close();
  }
  return [figures[0]!, { ...figures[1]!, counted }];
}

/** Actions per counting pass: one at a time, then 8 in flight. */
const COUNTED_SERIAL = 100;
const COUNTED_LOADED = 200;

/**
 * The counting pass: a fleet like the measured one (a frontend and two workers × 2, on the same Redis), each
 * side through a counting proxy of its own, and the frontend's gRPC calls read from its /metrics; requests per
 * action one at a time, then 8 in flight. Exact counts, whatever the machine's load.
 */
async function countFleet(redis: TestRedis, store: string): Promise<{ serial: ActionCounts; loaded: ActionCounts }> {
  const frontendProxy = await startCountingProxy(redis.port);
  const workersProxy = await startCountingProxy(redis.port);
  const front = await startFrontend({ redis: frontendProxy.url, store, args: ['--metrics-listen', '127.0.0.1:0'] });
  const workers = await Promise.all(
    [0, 1].map(() => startWorker({ redis: workersProxy.url, frontend: front.url, concurrency: 2 })),
  );
  const clients = clientsFor(`127.0.0.1:${front.port}`);
  try {
    const metricsUrl = await metricsUrlOf(front);
    const fixture = new ActionFixture(clients);
    const run = runner(clients);
    const tag = `count-${Date.now()}`;
    for (const action of await actions(fixture, 20, `${tag}-warm`)) await run(action);
    /** Runs `load` `concurrency` at a time; returns what it cost per action. */
    const counted = async (load: Digest[], concurrency: number): Promise<ActionCounts> => {
      const grpcBefore = await grpcCallsByWorkers(metricsUrl!);
      frontendProxy.reset();
      workersProxy.reset();
      await inFlight(load, concurrency, run);
      const perAction = (tally: RedisTally): SideCounts => {
        const byName = new Map([...tally.commands].map(([name, n]) => [name, n / load.length]));
        const commands = [...byName].reduce((sum, [name, n]) => sum + (BACKGROUND.has(name) ? 0 : n), 0);
        return { commands, roundTrips: tally.roundTrips / load.length, byName };
      };
      const frontend = perAction(frontendProxy.tally());
      const workers = perAction(workersProxy.tally());
      const grpcFromWorkers = ((await grpcCallsByWorkers(metricsUrl!)) - grpcBefore) / load.length;
      return { frontend, workers, grpcFromWorkers };
    };
    const serial = await counted(await actions(fixture, COUNTED_SERIAL, `${tag}-serial`), 1);
    const loaded = await counted(await actions(fixture, COUNTED_LOADED, `${tag}-loaded`), 8);
    return { serial, loaded };
  } finally {
    clients.close();
    await Promise.all(workers.map((w) => w.stop()));
    await front.stop();
    await frontendProxy.close();
    await workersProxy.close();
  }
}

/** The /metrics address of an executor started with --metrics-listen (printed just after its listening line). */
async function metricsUrlOf(executor: { output(): string }): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const url = /larder executor metrics on (\S+)\/metrics/.exec(executor.output())?.[1];
    if (url !== undefined) return url;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the executor named no metrics address:\n${executor.output()}`);
}

/** The store's puts so far (every store of the graph, every result): their count and their summed seconds. */
async function storePuts(metricsUrl: string): Promise<{ count: number; seconds: number }> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const puts = { count: 0, seconds: 0 };
  const series = /^larder_store_operation_seconds_(sum|count)\{[^}]*operation="put"[^}]*\} (\S+)$/gm;
  for (const [, kind, value] of text.matchAll(series)) puts[kind === 'sum' ? 'seconds' : 'count'] += Number(value);
  return puts;
}

/**
 * The gRPC calls the frontend has answered, less the clients' own (Execute, WaitExecution): while the bench only
 * executes, the rest are the workers' (reading inputs, uploading outputs, writing the action cache).
 */
async function grpcCallsByWorkers(metricsUrl: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  let calls = 0;
  for (const [, method, value] of text.matchAll(/^larder_grpc_calls_total\{[^}]*method="([^"]+)"[^}]*\} (\S+)$/gm))
    if (method !== 'Execute' && method !== 'WaitExecution') calls += Number(value);
  return calls;
}

/** Runs one action through Execute to its result; throws unless it exited 0. */
function runner(clients: Clients): (actionDigest: Digest) => Promise<ExecuteResponse> {
  return async (actionDigest) => {
    const response = finalResponse(await drain(clients.execution.execute({ actionDigest, skipCacheLookup: true })));
    if (response.result?.exitCode !== 0) throw new Error(`an action failed: ${response.status?.message}`);
    return response;
  };
}

/** Runs every action of `load` through `run`, `concurrency` at a time. */
async function inFlight(load: Digest[], concurrency: number, run: (d: Digest) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < load.length) await run(load[next++]!);
    }),
  );
}

/** Blocks each setup's actions are measured in, in A-B-B-A order: one-at-a-time latencies, then throughput. */
const BLOCKS = 4;

/**
 * Latency one at a time and throughput `concurrency` at a time of each setup, measured in BLOCKS alternating
 * blocks (A-B-B-A, …) of an equal share of the actions each, so that the setups see the same machine.
 */
async function measureSideBySide(
  setups: Array<{
    setup: string;
    address: string;
    metricsUrl: string;
    processes: Array<{ name: string; pid: number }>;
    /** The action-cache write follows the answer (in-process workers, run-action.ts). */
    writeFollowsAnswer?: boolean;
  }>,
  options: FleetBenchOptions,
): Promise<FleetFigures[]> {
  const sides = setups.map(({ setup, address, metricsUrl, processes, writeFollowsAnswer = false }) => {
    const clients = clientsFor(address);
    return {
      setup,
      metricsUrl,
      writeFollowsAnswer,
      puts: { count: 0, seconds: 0 },
      processes,
      cpuNs: processes.map(() => 0),
      clients,
      fixture: new ActionFixture(clients),
      run: runner(clients),
      tag: `${setup}-${Date.now()}`,
      latencies: [] as number[],
      lives: [] as Instants[],
      actions: 0,
      seconds: 0,
    };
  });
  const inOrder = (block: number) => (block % 2 === 0 ? sides : [...sides].reverse());
  // Latency on the monotonic clock; the phases' instants on the clock the workers' metadata uses, which follows
  // the wall clock (performance.timeOrigin + now() drifts from it, and a step of the host's clock showed as tens of ms).
  try {
    // Warm up: connections, the input cache, JIT.
    for (const side of sides)
      for (const action of await actions(side.fixture, 20, `${side.tag}-warm`)) await side.run(action);
    for (let block = 0; block < BLOCKS; block++) {
      for (const side of inOrder(block)) {
        const latencyActions = Math.ceil(options.latencyActions / BLOCKS);
        const load = await actions(side.fixture, latencyActions, `${side.tag}-latency-${block}`);
        // The uploads of the actions above are puts too: counted from here, only the runs' own (action-cache) ones.
        const putsBefore = await storePuts(side.metricsUrl);
        for (const action of load) {
          const [sent, started] = [preciseWallClockMs(), performance.now()];
          const response = await side.run(action);
          const [received, ended] = [preciseWallClockMs(), performance.now()];
          side.latencies.push(ended - started);
          side.lives.push(instantsOf(response, sent, received, `Execute ${action.hash}`));
        }
        const putsAfter = await storePuts(side.metricsUrl);
        side.puts.count += putsAfter.count - putsBefore.count;
        side.puts.seconds += putsAfter.seconds - putsBefore.seconds;
      }
    }
    for (let block = 0; block < BLOCKS; block++) {
      for (const side of inOrder(block)) {
        const load = await actions(side.fixture, Math.ceil(options.actions / BLOCKS), `${side.tag}-load-${block}`);
        const cpuBefore = side.processes.map(({ pid }) => cpuNanoseconds(pid));
        const start = performance.now();
        await inFlight(load, options.concurrency ?? 8, side.run);
        side.seconds += (performance.now() - start) / 1000;
        for (const [i, { pid }] of side.processes.entries()) side.cpuNs[i]! += cpuNanoseconds(pid) - cpuBefore[i]!;
        side.actions += load.length;
      }
    }
    return sides.map((side) => {
      const latencies = side.latencies.sort((a, b) => a - b);
      return {
        setup: side.setup,
        concurrency: options.concurrency ?? 8,
        actionsPerSecond: side.actions / side.seconds,
        p50Ms: percentile(latencies, 0.5),
        p99Ms: percentile(latencies, 0.99),
        phaseP50Ms: phaseMediansMs(side.lives),
        outputsToDone: {
          meanMs:
            side.lives.reduce((sum, l) => sum + l.workerCompletedTimestamp - l.outputUploadCompletedTimestamp, 0) /
            side.lives.length,
          putMeanMs: (side.puts.seconds * 1000) / side.puts.count,
          writeFollowsAnswer: side.writeFollowsAnswer,
        },
        cpuMsPerAction: side.processes.map(({ name }, i) => ({
          process: name,
          ms: side.cpuNs[i]! / 1e6 / side.actions,
        })),
      };
    });
  } finally {
    for (const side of sides) side.clients.close();
  }
}

export interface SchedulerFigures {
  scheduler: string;
  p50Ms: number;
  p99Ms: number;
  /** Operations per second with `concurrency` in flight. */
  perSecond: number;
  concurrency: number;
  /** Redis commands clients sent per operation, one at a time (a script is one; heartbeats and sweeps included). */
  commandsPerOperation?: number;
}

/** The schedulers alone (see the header): p50/p99 one at a time, and operations per second `concurrency` at a time. */
export async function runSchedulerBench(options: {
  operations: number;
  concurrency: number;
  /**
   * The bench Redis's appendfsync: `everysec` (Redis's default with appendonly on, as the README runs it), or
   * `always` (the test helper's: an fsync before every write command's reply).
   */
  fsync?: 'always' | 'everysec';
}): Promise<SchedulerFigures[]> {
  const figures: SchedulerFigures[] = [];
  const memory = new MemoryScheduler();
  figures.push(await measureScheduler('memory', memory, [memory, memory, memory, memory], options));
  await memory.close();
  const fsync = options.fsync ?? 'everysec';
  const redis = await startRedis({ args: ['--appendfsync', fsync] });
  try {
    const open = () => RedisScheduler.open({ url: redis.url, log: createLogger('silent'), shutdownGraceMs: 100 });
    const front = await open();
    // Two worker processes' schedulers, two slots each: the bench's fleet (2 workers × 2).
    const workers = [await open(), await open()];
    const measured = await measureScheduler(`redis (appendfsync ${fsync})`, front, [...workers, ...workers], options);
    // Commands sent by clients (what MONITOR shows, less what scripts run inside): round trips, at most. Counted
    // in a pass of their own, as MONITOR slows Redis down.
    const client = new Redis(redis.url);
    const marker = new Redis(redis.url);
    const monitor = await client.monitor();
    let sent = 0;
    let seen = (_mark: string) => {};
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source === 'lua') return;
      sent++;
      if (args[0] === 'echo') seen(args[1]!);
    });
    let marks = 0;
    /** The count once MONITOR has shown every command sent before (it lags): a marker sent now, then seen. */
    const commands = async () => {
      const mark = `bench-mark-${marks++}`;
      const shown = new Promise<void>((resolve) => (seen = (m) => m === mark && resolve()));
      await marker.echo(mark);
      await shown;
      return sent;
    };
    const counted = await measureScheduler('redis', front, [...workers, ...workers], { ...options, commands });
    figures.push({ ...measured, commandsPerOperation: counted.commandsPerOperation });
    monitor.disconnect();
    client.disconnect();
    marker.disconnect();
    await Promise.all([front, ...workers].map((s) => s.close()));
  } finally {
    await redis.close();
  }
  return figures;
}

async function measureScheduler(
  name: string,
  front: Scheduler,
  workerSchedulers: Scheduler[],
  options: { operations: number; concurrency: number; commands?: () => Promise<number> },
): Promise<SchedulerFigures> {
  const platform = workerPlatform(new Map(), ['local']);
  const stop = new AbortController();
  const done = create(ExecuteResponseSchema, { status: { code: 0 }, result: { exitCode: 0 } });
  const loops = await Promise.all(
    workerSchedulers.map(async (scheduler, i) => {
      const slot = await scheduler.join({ name: `bench-${i}`, platform });
      // Wrapped: an async function returning the loop's promise would wait for the loop to end.
      return {
        loop: (async () => {
          while (!stop.signal.aborted) {
            const lease = await slot.take(stop.signal).catch(() => null);
            if (lease === null) break;
            await lease.executing();
            // This loop takes again as soon as the result is in, as a worker with every slot busy does.
            await lease.complete(done, { takeFollows: true });
          }
          await slot.leave();
        })(),
      };
    }),
  );
  const caller = { id: 'bench', operator: false };
  let serial = 0;
  /** One operation, as the Execution service follows it: submit, subscribe, get until done. */
  const execute = async () => {
    const state = await front.submit(job(`${name}-${serial++}-${Date.now()}`, { arch: null }), null, caller.id);
    let wake = () => {};
    const unsubscribe = await front.subscribe(state.name, () => wake());
    try {
      for (;;) {
        const changed = new Promise<void>((resolve) => (wake = resolve));
        if ((await front.get(state.name, caller))?.done) return;
        await changed;
      }
    } finally {
      unsubscribe?.();
    }
  };
  try {
    for (let i = 0; i < 50; i++) await execute(); // warm-up
    const latencies: number[] = [];
    const commandsBefore = await options.commands?.();
    for (let i = 0; i < options.operations; i++) {
      const start = performance.now();
      await execute();
      latencies.push(performance.now() - start);
    }
    const commandsPerOperation =
      commandsBefore === undefined
        ? undefined
        : // Less the marker the second count sends.
          ((await options.commands!()) - commandsBefore - 1) / options.operations;
    latencies.sort((a, b) => a - b);
    const start = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (next++ < options.operations * 4) await execute();
      }),
    );
    return {
      scheduler: name,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      perSecond: (options.operations * 4) / ((performance.now() - start) / 1000),
      concurrency: options.concurrency,
      commandsPerOperation,
    };
  } finally {
    stop.abort(new Error('bench over'));
    await Promise.all(loops.map((l) => l.loop));
  }
}

export function schedulerTable(figures: SchedulerFigures[]): string {
  const base = figures[0]!;
  return formatTable(
    [
      'scheduler',
      'p50 ms (1 at a time)',
      'p99 ms',
      'p50 added',
      `operations/s (${base.concurrency} in flight)`,
      'vs memory',
      'Redis commands sent per operation',
    ],
    figures.map((f) => [
      f.scheduler,
      num(f.p50Ms),
      num(f.p99Ms),
      num(f.p50Ms - base.p50Ms),
      num(f.perSecond),
      `${num(f.perSecond / base.perSecond)}×`,
      f.commandsPerOperation === undefined ? '' : num(f.commandsPerOperation),
    ]),
  );
}

/** The bounds the load run holds the fleet to (issue 18): what a frontend and Redis may use for 10,000 at once. */
export const LOAD_BOUNDS = { frontendPeakRssMiB: 1024, redisPeakMiB: 256 };

export interface LoadFigures {
  executes: number;
  completed: number;
  /** Streams that ended without a done operation (an error, or the end of the stream). */
  broken: number;
  seconds: number;
  frontendPeakRssMiB: number;
  redisPeakMiB: number;
  /** What was left in Redis once every stream ended: leases, queued jobs, subscribed operation channels. */
  leftOver: { leases: number; queued: number; channels: number };
  followers: number;
  /** Distinct operation names the followers of the one merged action were given (1 when merged). */
  followerOperations: number;
  followersCompleted: number;
}

/** The load run (see the header): one frontend, two workers × 4, a fresh Redis and store. */
export async function runFleetLoad(options: { executes: number; followers: number }): Promise<LoadFigures> {
  const dir = reachableTempDir('larder-bench-load-');
  const redis = await startRedis();
  const raw = new Redis(redis.url);
  const front = await startFrontend({ redis: redis.url, store: `${dir}/store` });
  const workers = await Promise.all(
    [0, 1].map(() => startWorker({ redis: redis.url, frontend: front.url, concurrency: 4 })),
  );
  // Several connections, as many clients would be: one HTTP/2 connection caps its concurrent streams.
  const connections: Clients[] = Array.from({ length: 20 }, () => clientsFor(`127.0.0.1:${front.port}`));
  try {
    const fixture = new ActionFixture(connections[0]!);
    const load = await actions(fixture, options.executes, `load-${Date.now()}`);
    const start = performance.now();
    const outcomes = await Promise.all(
      load.map(async (actionDigest, i) => {
        try {
          const response = finalResponse(
            await drain(
              connections[i % connections.length]!.execution.execute({ actionDigest, skipCacheLookup: true }),
            ),
          );
          return response.result?.exitCode === 0 ? 'ok' : 'failed';
        } catch {
          return 'broken';
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;

    // 100 clients following one action: merged into one operation, run once, every follower told.
    const [command] = await fixture.upload(
      toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/sh', '-c', 'sleep 2'] })),
    );
    const merged = toBinary(
      ActionSchema,
      create(ActionSchema, {
        commandDigest: command,
        inputRootDigest: await fixture.directory({}),
        salt: Buffer.from(`merged-${Date.now()}`),
      }),
    );
    await fixture.upload(merged);
    const mergedDigest = create(DigestSchema, digestOf(merged));
    const followed = await Promise.all(
      Array.from({ length: options.followers }, async (_, i) => {
        const operations = await drain(
          connections[i % connections.length]!.execution.execute({ actionDigest: mergedDigest }),
        );
        return { name: operations[0]!.name, ok: finalResponse(operations).result?.exitCode === 0 };
      }),
    );

    const memory = await raw.info('memory');
    const queues = await raw.hkeys('larder:queues');
    const queued = (await Promise.all(queues.map((q) => raw.zcard(`larder:queue:${q}`)))).reduce((a, b) => a + b, 0);
    return {
      executes: options.executes,
      completed: outcomes.filter((o) => o === 'ok').length,
      broken: outcomes.filter((o) => o === 'broken').length,
      seconds,
      frontendPeakRssMiB: peakRssMiB(front.pid),
      redisPeakMiB: Number(/used_memory_peak:(\d+)/.exec(memory)![1]) / 2 ** 20,
      leftOver: {
        leases: await raw.zcard('larder:leases'),
        queued,
        channels: (await raw.pubsub('CHANNELS', 'larder:ev:*')).length,
      },
      followers: options.followers,
      followerOperations: new Set(followed.map((f) => f.name)).size,
      followersCompleted: followed.filter((f) => f.ok).length,
    };
  } finally {
    for (const c of connections) c.close();
    raw.disconnect();
    await Promise.all(workers.map((w) => w.stop()));
    await front.stop();
    await redis.close();
  }
}

export function loadReport(f: LoadFigures): string {
  const within = (value: number, bound: number) =>
    `${num(value)} MiB (bound ${bound} MiB: ${value <= bound ? 'within' : 'OVER'})`;
  return [
    `${f.executes} concurrent Executes: ${f.completed} completed, ${f.broken} streams broken, in ${num(f.seconds)} s (${num(f.executes / f.seconds)} actions/s)`,
    `frontend peak RSS ${within(f.frontendPeakRssMiB, LOAD_BOUNDS.frontendPeakRssMiB)}; Redis peak memory ${within(f.redisPeakMiB, LOAD_BOUNDS.redisPeakMiB)}`,
    `left in Redis afterwards: ${f.leftOver.leases} leases, ${f.leftOver.queued} queued jobs, ${f.leftOver.channels} operation channels subscribed`,
    `${f.followers} clients following one action: ${f.followerOperations} operation(s), ${f.followersCompleted} told the result`,
  ].join('\n');
}

/** `count` distinct trivial actions, uploaded. */
async function actions(fixture: ActionFixture, count: number, tag: string): Promise<Digest[]> {
  const [command] = await fixture.upload(toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/true'] })));
  const root = await fixture.directory({});
  const blobs = Array.from({ length: count }, (_, i) =>
    toBinary(
      ActionSchema,
      create(ActionSchema, { commandDigest: command, inputRootDigest: root, salt: Buffer.from(`${tag}-${i}`) }),
    ),
  );
  for (let at = 0; at < blobs.length; at += 500) await fixture.upload(...blobs.slice(at, at + 500));
  return blobs.map((b) => create(DigestSchema, digestOf(b)));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

export function fleetTable(figures: FleetFigures[]): string {
  const base = figures[0]!;
  return formatTable(
    [
      'setup',
      `actions/s (${base.concurrency} in flight)`,
      'vs memory',
      'p50 ms (1 at a time)',
      'p99 ms',
      'p50 added',
      'p99 added',
      'Redis commands/action (front + workers): 1 at a time, 8 in flight',
      'Redis round trips/action (front + workers)',
      'gRPC worker→frontend/action',
      'CPU ms/action (8 in flight)',
    ],
    figures.map((f) => {
      const c = f.counted;
      const pair = (pick: (s: SideCounts) => number) =>
        c === undefined
          ? '-'
          : [c.serial, c.loaded].map((a) => `${num(pick(a.frontend))} + ${num(pick(a.workers))}`).join(', ');
      return [
        f.setup,
        num(f.actionsPerSecond),
        `${num(f.actionsPerSecond / base.actionsPerSecond)}×`,
        num(f.p50Ms),
        num(f.p99Ms),
        num(f.p50Ms - base.p50Ms),
        num(f.p99Ms - base.p99Ms),
        pair((s) => s.commands),
        pair((s) => s.roundTrips),
        c === undefined ? '-' : `${num(c.serial.grpcFromWorkers)}, ${num(c.loaded.grpcFromWorkers)}`,
        f.cpuMsPerAction === undefined ? '-' : num(f.cpuMsPerAction.reduce((sum, { ms }) => sum + ms, 0)),
      ];
    }),
  );
}

/** Where the one-at-a-time actions' time went in each setup, and what the fleet adds to each phase. */
export function phasesTable(figures: FleetFigures[]): string {
  const base = figures[0]!;
  return formatTable(
    ['p50 ms of each phase (1 at a time)', ...PHASES.map((phase) => phase.name)],
    [
      ...figures.map((f) => [f.setup, ...f.phaseP50Ms.map((ms) => num(ms))]),
      ...figures
        .slice(1)
        .map((f) => [
          `added by ${f.setup.split(' ')[0]}`,
          ...f.phaseP50Ms.map((ms, i) => num(ms - base.phaseP50Ms[i]!)),
        ]),
    ],
  );
}

/** Where each setup's outputs → done went, in means (see FleetFigures.outputsToDone). */
export function writeBreakdown(figures: FleetFigures[]): string {
  return figures
    .filter((f) => f.outputsToDone !== undefined)
    .map((f) => {
      const { meanMs, putMeanMs, writeFollowsAnswer } = f.outputsToDone!;
      return writeFollowsAnswer
        ? `${f.setup}: outputs → done ${num(meanMs)}; the store put (${num(putMeanMs)}) follows the answer`
        : `${f.setup}: outputs → done ${num(meanMs)} = store put ${num(putMeanMs)} + ${num(meanMs - putMeanMs)} around it`;
    })
    .join('\n');
}

/** Each setup's CPU per action by process (what the fleet table's CPU column is made of). */
export function cpuBreakdown(figures: FleetFigures[]): string {
  return figures
    .filter((f) => f.cpuMsPerAction !== undefined)
    .map((f) => `${f.setup}: ${f.cpuMsPerAction!.map(({ process, ms }) => `${process} ${num(ms)}`).join(', ')}`)
    .join('\n');
}

/** Each counted pass's commands per action by name, per side (what the fleet table's counts are made of). */
export function countsBreakdown(figures: FleetFigures[]): string {
  const lines: string[] = [];
  for (const f of figures) {
    if (f.counted === undefined) continue;
    for (const [pass, counts] of [
      ['1 at a time', f.counted.serial],
      ['8 in flight', f.counted.loaded],
    ] as const)
      for (const side of ['frontend', 'workers'] as const) {
        const names = [...counts[side].byName].sort(([, a], [, b]) => b - a).map(([n, v]) => `${n} ${num(v)}`);
        lines.push(`${f.setup}, ${pass}, ${side}: ${names.join(', ')}`);
      }
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      actions: { type: 'string', default: '1000' },
      'latency-actions': { type: 'string', default: '200' },
      concurrency: { type: 'string', default: '8' },
      load: { type: 'string' },
      followers: { type: 'string', default: '100' },
      'scheduler-only': { type: 'boolean', default: false },
      fsync: { type: 'string', default: 'everysec' },
      'count-only': { type: 'boolean', default: false },
    },
  });
  if (values['count-only']) {
    // The counting pass alone (exact, and quick): what each action asks of Redis and of the frontend.
    const redis = await startRedis({ args: ['--appendfsync', 'everysec'] });
    try {
      const counted = await countFleet(redis, `${reachableTempDir('larder-bench-count-')}/store`);
      const figures = [
        { setup: 'redis', concurrency: 8, actionsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN, phaseP50Ms: [], counted },
      ];
      console.log(fleetTable(figures));
      console.log(countsBreakdown(figures));
    } finally {
      await redis.close();
    }
    process.exit(0);
  }
  if (values['scheduler-only']) {
    const figures = await runSchedulerBench({
      operations: Number(values['latency-actions']),
      concurrency: Number(values.concurrency),
      fsync: values.fsync === 'always' ? 'always' : 'everysec',
    });
    console.log(schedulerTable(figures));
    process.exit(0);
  }
  if (values.load !== undefined) {
    console.log(loadReport(await runFleetLoad({ executes: Number(values.load), followers: Number(values.followers) })));
    process.exit(0);
  }
  const figures = await runFleetBench({
    actions: Number(values.actions),
    latencyActions: Number(values['latency-actions']),
    concurrency: Number(values.concurrency),
    fsync: values.fsync === 'always' ? 'always' : 'everysec',
  });
  console.log(fleetTable(figures));
  console.log(`\n${phasesTable(figures)}`);
  console.log(
    "phases: from the workers' ExecutedActionMetadata timestamps (microsecond resolution) and the client's send and receive times; each column is its own median.",
  );
  console.log(
    "\nThe action-cache write (outputs → done), means of the actions run one at a time, in ms: the store's put in the fleet's frontend (larder_store_operation_seconds) and the rest (the worker's UpdateActionResult round trip); the memory executor's workers answer first and write after:",
  );
  console.log(writeBreakdown(figures));
  console.log(`\nRedis commands per action by name (background: ${[...BACKGROUND].join(', ')}):`);
  console.log(countsBreakdown(figures));
  console.log(
    "\nCPU ms per action by process, 8 in flight (all of a process's threads; the actions' own processes apart):",
  );
  console.log(cpuBreakdown(figures));
}
