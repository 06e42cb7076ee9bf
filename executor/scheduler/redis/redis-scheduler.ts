/**
 * The fleet's scheduler: the same `Scheduler` as the embedded one, with its state in one shared Redis, so any
 * number of frontends submit and follow operations and any number of worker processes, on any hosts, take
 * them. What is where is described in scripts.ts; each step that must not race is one Lua script there.
 *
 * - Platform queues: one sorted set per distinct set of routing constraints; a worker's claim takes the most
 *   urgent job among all the queues it satisfies, in one atomic step.
 * - Blocking dequeues: an idle worker waits in BLPOP on the wake list of its platform, which every submit it
 *   could serve pushes a marker to; BLPOP also returns every few seconds (wakeTimeoutMs), a safety net for a
 *   marker lost with a worker that died between popping it and claiming. No polling loop.
 * - Registration: workers heartbeat into `P workers` (on Redis's clock); submit fails fast with
 *   FAILED_PRECONDITION when no live worker could run the action, as the in-memory scheduler does, and the
 *   sweep fails queued jobs whose every matching worker has been gone for a grace period (UNAVAILABLE).
 * - Waiters: each operation records the principals waiting on it (`w:ID` fields), so a stranger's get and
 *   cancel find nothing and a cancel detaches only its caller; the run stops when no waiter is left.
 * - At-least-once: a claimed job carries a lease its worker renews (worker-lease.ts) from claim to result;
 *   every process sweeps expired leases and requeues their jobs, up to maxAttempts deliveries, then finishes
 *   the operation with a message saying so. Only the current lease holder's result is recorded (once).
 * - Merging across frontends: `P merge:KEY` names the operation in flight, checked and set atomically.
 * - Finished operations keep their result for retainMs, then Redis expires them.
 *
 * Why not BullMQ (which does locks, stalled-job recovery and de-duplication): a BullMQ worker consumes one
 * named queue and blocks on that queue alone, while a larder worker must take from every platform queue it
 * satisfies, most urgent first, under one concurrency limit, and wait on all of them at once; the Scheduler is
 * pull-based (`take`), where BullMQ's manual mode leaves lock renewal and stalled checks to the caller anyway;
 * and the parts larder needs most (merging identical actions in flight, followers of an operation on any
 * frontend, a cancel reaching the holder, a result recorded once) are not queue features. Using it for the one
 * part that fits would have meant two sources of truth for one operation. ioredis does the connection work:
 * reconnection, resubscription, script caching (EVALSHA with a fallback after a Redis restart).
 */
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { LarderError } from '../../../shared/errors.ts';
import type { Logger } from '../../../shared/log.ts';
import { ExecutionStage_Value } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import {
  type ActionPlatform,
  describeWorkerPlatform,
  unmatchedProperties,
  type WorkerPlatform,
} from '../../execution/platform.ts';
import { Code, RpcError } from '../../grpc-status.ts';
import {
  type Caller,
  type ExecutionJob,
  MAX_WAITERS,
  type OperationState,
  type Scheduler,
  type SchedulerStats,
  type Standing,
  standingView,
  type WorkerSlot,
} from '../scheduler.ts';
import {
  decodeResponse,
  decodeWorkerSpec,
  encodeJob,
  formatDigest,
  parseStoredDigest,
  queueSpec,
  statusResponse,
} from './codec.ts';
import { connectionOptions, type QueueConnection, redactUrl } from './connection.ts';
import { OperationEvents } from './events.ts';
import { SCRIPTS, type ScriptName } from './scripts.ts';
import { joinFleet } from './worker-slot.ts';

export interface RedisSchedulerOptions extends QueueConnection {
  log: Logger;
  /** Key prefix, so fleets can share a Redis. Default `larder:`. */
  prefix?: string;
  /** How long a claimed job is a worker's without renewal. Default 30 s (renewed every third of it). */
  leaseMs?: number;
  /** Deliveries of one job before it fails instead of going to yet another worker. Default 3. */
  maxAttempts?: number;
  /** A worker that has not heartbeaten for this long is not counted as live. Default 15 s. */
  heartbeatMs?: number;
  /**
   * How long queued jobs wait once no live worker can take them (all that could left, or stopped heartbeating)
   * before they fail with UNAVAILABLE: room for a worker to restart. Default heartbeatMs.
   */
  strandedGraceMs?: number;
  /** How long a finished operation's result stays for WaitExecution. Default 10 minutes. */
  retainMs?: number;
  /** Bound on an unfinished operation's keys, should every process forget it. Default 1 day. */
  inFlightTtlMs?: number;
  /** How long close() waits for the runs of leases held here to stop and hand their jobs back. Default 15 s. */
  shutdownGraceMs?: number;
  /** The longest an idle worker blocks in BLPOP before looking at the queues itself. Default 5 s. */
  wakeTimeoutMs?: number;
}

export interface LiveWorker {
  platform: WorkerPlatform;
  wake: string;
}

type Config = Required<Omit<RedisSchedulerOptions, 'log' | 'passwordFile' | 'caPath'>>;

export class RedisScheduler implements Scheduler {
  readonly config: Config;
  readonly log: Logger;
  readonly redis: Redis;
  readonly events: OperationEvents;
  /** Aborted by close(): leases held in this process hand their jobs back. */
  readonly closing = new AbortController();
  /** Settles when a lease held here is completed or released; close() waits for them. */
  readonly held = new Set<Promise<void>>();
  private readonly subscriber: Redis;
  private readonly slots = new Set<WorkerSlot>();
  private readonly sweeper: NodeJS.Timeout;
  /** Address, credentials and TLS of every connection (connection.ts). */
  private readonly connection: RedisOptions;

  private constructor(options: RedisSchedulerOptions, connection: RedisOptions) {
    this.connection = connection;
    const heartbeatMs = options.heartbeatMs ?? 15_000;
    this.config = {
      url: options.url,
      prefix: options.prefix ?? 'larder:',
      leaseMs: options.leaseMs ?? 30_000,
      maxAttempts: options.maxAttempts ?? 3,
      heartbeatMs,
      strandedGraceMs: options.strandedGraceMs ?? heartbeatMs,
      retainMs: options.retainMs ?? 10 * 60_000,
      inFlightTtlMs: options.inFlightTtlMs ?? 24 * 3600_000,
      wakeTimeoutMs: options.wakeTimeoutMs ?? 5_000,
      shutdownGraceMs: options.shutdownGraceMs ?? 15_000,
    };
    this.log = options.log;
    this.redis = this.connect('commands', { maxRetriesPerRequest: 2 });
    // defineCommand sends each script once and then calls it by SHA (EVALSHA), reloading it after a restart.
    for (const [name, script] of Object.entries(SCRIPTS)) this.redis.defineCommand(`larder_${name}`, script);
    this.subscriber = this.connect('events', { maxRetriesPerRequest: null });
    this.events = new OperationEvents(this.subscriber, this.config.prefix);
    // Every process sweeps; the script is atomic, so an expired lease is requeued once however many run it.
    this.sweeper = setInterval(() => void this.sweep().catch(() => {}), Math.max(100, this.config.leaseMs / 3));
    this.sweeper.unref();
  }

  /** Connects and checks that Redis answers, so a wrong --queue fails at start, not at the first action. */
  static async open(options: RedisSchedulerOptions): Promise<RedisScheduler> {
    const scheduler = new RedisScheduler(options, await connectionOptions(options));
    // A refused login or certificate fails the connection, not the command (which only runs out of retries):
    // the connection's own error is the one worth reporting.
    const seen: { error?: Error } = {};
    const remember = (err: Error) => {
      seen.error = err;
    };
    scheduler.redis.on('error', remember);
    try {
      await scheduler.guard(() => scheduler.redis.ping());
    } catch (err) {
      await scheduler.close();
      const refused = seen.error?.message;
      if (refused === undefined || (err as Error).message.includes(refused)) throw err;
      throw new LarderError(
        'unavailable',
        `cannot connect to the queue (Redis at ${redactUrl(options.url)}): ${refused}`,
      );
    } finally {
      scheduler.redis.off('error', remember);
    }
    return scheduler;
  }

  /** A Redis connection that reconnects forever (with backoff) and logs its troubles instead of throwing them. */
  connect(role: string, options: { maxRetriesPerRequest: number | null }): Redis {
    const redis = new Redis({
      ...this.connection,
      ...options,
      connectionName: `larder-${role}`,
      retryStrategy: (times) => Math.min(times * 100, 2_000),
    });
    let lastLog = 0;
    redis.on('error', (err: Error) => {
      if (Date.now() - lastLog < 5_000) return;
      lastLog = Date.now();
      this.log.warn('redis connection trouble', { role, redis: redactUrl(this.config.url), error: err.message });
    });
    return redis;
  }

  /** Runs one of scripts.ts with the prefix as its first argument. */
  script<T>(name: ScriptName, ...args: (string | number)[]): Promise<T> {
    const command = (this.redis as unknown as Record<string, (...a: (string | number)[]) => Promise<T>>)[
      `larder_${name}`
    ]!;
    return command.call(this.redis, this.config.prefix, ...args);
  }

  async submit(job: Omit<ExecutionJob, 'operation'>, mergeKey: string | null, waiter: string): Promise<OperationState> {
    return this.guard(async () => {
      const workers = await this.liveWorkers();
      checkRunnable(job.platform, workers);
      const wakes = new Set(
        workers.filter((w) => unmatchedProperties(job.platform, w.platform).length === 0).map((w) => w.wake),
      );
      const queue = queueSpec(job.platform);
      const name = `operations/${randomUUID()}`;
      const [opName, merged] = await this.script<[string, number]>(
        'submit',
        name,
        encodeJob(job),
        formatDigest(job.actionDigest),
        mergeKey ?? '',
        queue.key,
        queue.spec,
        job.priority,
        this.config.inFlightTtlMs,
        job.instance,
        waiter,
        MAX_WAITERS,
        ...wakes,
      );
      const queued: OperationState = {
        name: opName,
        instance: job.instance,
        actionDigest: job.actionDigest,
        stage: ExecutionStage_Value.QUEUED,
        done: false,
      };
      if (merged === 1) return (await this.get(opName, { id: waiter, operator: false })) ?? queued;
      return queued;
    });
  }

  async get(name: string, caller: Caller): Promise<OperationState | null> {
    return this.guard(async () => {
      const [stage, done, response, digest, instance, mine] = await this.redis.hmget(
        this.key('op', name),
        'stage',
        'done',
        'response',
        'digest',
        'instance',
        `w:${caller.id}`,
      );
      if (done == null || digest == null) return null;
      const state = {
        name,
        instance: instance ?? '',
        actionDigest: parseStoredDigest(digest),
        stage: Number(stage) as ExecutionStage_Value,
      };
      const standing: Standing = mine === '1' ? 'waiting' : mine === '0' ? 'detached' : 'none';
      return standingView(
        done === '1' ? { ...state, done: true, response: decodeResponse(response!) } : { ...state, done: false },
        standing,
        caller,
      );
    });
  }

  async subscribe(name: string, listener: () => void): Promise<(() => void) | null> {
    return this.guard(async () => {
      const stop = await this.events.listen(name, () => listener());
      // Checked after listening, so a change between the two is not missed.
      if ((await this.redis.exists(this.key('op', name))) === 0) {
        stop();
        return null;
      }
      return stop;
    });
  }

  async cancel(name: string, caller: Caller): Promise<boolean> {
    return this.guard(async () => {
      const cancelled = statusResponse(Code.CANCELLED, 'cancelled before it ran');
      const operator = caller.operator ? 1 : 0;
      return (await this.script<number>('cancel', name, caller.id, operator, cancelled, this.config.retainMs)) === 1;
    });
  }

  async join(worker: { name: string; platform: WorkerPlatform }): Promise<WorkerSlot> {
    const slot = await this.guard(() => joinFleet(this, worker));
    this.slots.add(slot);
    return {
      take: slot.take,
      leave: async () => {
        this.slots.delete(slot);
        await slot.leave();
      },
    };
  }

  async stats(): Promise<SchedulerStats> {
    return this.guard(async () => {
      const [counts, running, queues] = await Promise.all([
        this.redis.hgetall(this.key('stats')),
        this.redis.zcard(this.key('leases')),
        this.redis.hkeys(this.key('queues')),
      ]);
      const sizes = await Promise.all(queues.map((q) => this.redis.zcard(this.key('queue', q))));
      const count = (field: string) => Number(counts[field] ?? 0);
      return {
        queued: sizes.reduce((a, b) => a + b, 0),
        running,
        submitted: count('submitted'),
        merged: count('merged'),
        completed: count('completed'),
      };
    });
  }

  /**
   * Stops this process's part: jobs its workers hold go back to the queue (their runs are stopped and the
   * leases released, so another worker runs them at once rather than after the lease expires); operations
   * themselves live on in Redis for the other frontends and workers.
   */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.closing.abort(
      new RpcError(Code.UNAVAILABLE, 'this worker is shutting down; the action goes back to the queue'),
    );
    const settled = Promise.all([...this.held]);
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, this.config.shutdownGraceMs).unref())]);
    await Promise.all([...this.slots].map((slot) => slot.leave().catch(() => {})));
    this.subscriber.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** Every live worker's platform and wake list. */
  async liveWorkers(): Promise<LiveWorker[]> {
    const flat = await this.script<string[]>('liveWorkers', this.config.heartbeatMs);
    const out: LiveWorker[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ platform: decodeWorkerSpec(flat[i]!), wake: flat[i + 1]! });
    return out;
  }

  /**
   * Requeues jobs whose leases expired (or fails them after maxAttempts), and wakes workers for the requeued;
   * fails queued jobs that no live worker has been able to take for strandedGraceMs.
   */
  async sweep(): Promise<void> {
    await this.sweepLeases();
    const stranded = statusResponse(
      Code.UNAVAILABLE,
      `no live worker can run this action any more: every worker that could take it left or stopped heartbeating (for ${Math.round((this.config.heartbeatMs + this.config.strandedGraceMs) / 1000)} s or more) while it was queued`,
    );
    const failed = await this.script<number>(
      'stranded',
      this.config.heartbeatMs,
      this.config.strandedGraceMs,
      stranded,
      this.config.retainMs,
    );
    if (failed > 0) this.log.warn('failed queued actions that no live worker can take', { count: failed });
  }

  private async sweepLeases(): Promise<void> {
    const gaveUp = statusResponse(
      Code.UNAVAILABLE,
      `the action was given to ${this.config.maxAttempts} workers in turn and each stopped renewing its lease (it crashed, was killed or lost Redis); larder gave up rather than run it again`,
    );
    const cancelled = statusResponse(Code.CANCELLED, 'the action was cancelled');
    const requeued = await this.script<string[]>(
      'sweep',
      this.config.maxAttempts,
      gaveUp,
      cancelled,
      this.config.retainMs,
    );
    if (requeued.length === 0) return;
    this.log.info('requeued actions whose workers stopped renewing their leases', { count: requeued.length });
    await this.wake(requeued);
  }

  /** Pushes a wake marker for each requeued job to every live worker platform that could take it. */
  async wake(queueKeys: string[]): Promise<void> {
    const workers = await this.liveWorkers();
    for (const queueKey of queueKeys) {
      const spec = await this.redis.hget(this.key('queues'), queueKey);
      if (spec === null) continue;
      const platform = platformOfQueue(spec);
      const wakes = new Set(
        workers.filter((w) => unmatchedProperties(platform, w.platform).length === 0).map((w) => w.wake),
      );
      for (const wake of wakes) await this.redis.rpush(this.key('wake', wake), '1');
    }
  }

  key(...parts: string[]): string {
    return `${this.config.prefix}${parts.join(':')}`;
  }

  /** Redis failures become UNAVAILABLE with the reason; deliberate errors pass through. */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RpcError || err instanceof LarderError) throw err;
      throw new LarderError(
        'unavailable',
        `the queue (Redis at ${redactUrl(this.config.url)}) failed: ${(err as Error).message}`,
      );
    }
  }
}

/** Fails fast when no live worker could ever run an action of this platform, naming what nobody offers. */
function checkRunnable(platform: ActionPlatform, workers: readonly LiveWorker[]): void {
  if (workers.length === 0)
    throw new RpcError(Code.FAILED_PRECONDITION, 'no worker is connected to the queue to execute actions');
  let closest: string[] | null = null;
  for (const worker of workers) {
    const unmatched = unmatchedProperties(platform, worker.platform);
    if (unmatched.length === 0) return;
    if (closest === null || unmatched.length < closest.length) closest = unmatched;
  }
  const offered = [...new Set(workers.map((w) => describeWorkerPlatform(w.platform)))].map((p) => `[${p}]`).join(' ');
  throw new RpcError(
    Code.FAILED_PRECONDITION,
    `no worker can run this action: none offers ${closest!.join(', ')} (workers offer ${offered})`,
  );
}

function platformOfQueue(spec: string): ActionPlatform {
  const parsed = JSON.parse(spec) as { c: Record<string, string[]>; r: ActionPlatform['runner'] };
  return { constraints: new Map(Object.entries(parsed.c)), options: new Map(), runner: parsed.r };
}
