/**
 * The fleet's scheduler: the same `Scheduler` as the embedded one, with its state in one shared Redis, so any
 * number of frontends submit and follow operations and any number of worker processes, on any hosts, take
 * them. What is where is described in scripts.ts; each step that must not race is one Lua script there.
 *
 * - Platform queues: one sorted set per distinct set of routing constraints; a worker's claim takes the most
 *   urgent job among all the queues it satisfies, in one atomic step.
 * - Blocking dequeues: an idle worker slot registers as waiting (in the claim script that found nothing) and
 *   waits in BLPOP on its own list and on the wake list of its platform. Submit hands a new job straight to a
 *   waiting slot that can run it (leased, and pushed to the slot's own list, so the BLPOP returns the job itself);
 *   only when none waits is the job queued, with a marker pushed to the wake list of every matching platform.
 *   BLPOP also returns every few seconds (wakeTimeoutMs), a safety net for a marker lost with a worker that died
 *   between popping it and claiming. No polling loop.
 * - Registration: workers heartbeat into `P workers` (on Redis's clock); submit fails fast with
 *   FAILED_PRECONDITION when no live worker could run the action, as the in-memory scheduler does, and the
 *   sweep fails queued jobs whose every matching worker has been gone for a grace period (UNAVAILABLE).
 * - Reply channel: a frontend subscribes one channel of its own (`P reply:ID`) once, and every event of an
 *   operation it created is published there too, with the operation's name; its submitters follow their
 *   operations through it, routed by name in this process, so a submission costs one script and nothing else.
 *   Followers that did not submit here (WaitExecution on another frontend, a merged submission) subscribe the
 *   operation's own channel, which hears every event as well.
 * - Waiters: each operation records the principals waiting on it (`w:ID` fields), so a stranger's get and
 *   cancel find nothing and a cancel detaches only its caller; the run stops when no waiter is left.
 * - At-least-once: a claimed job carries a lease its worker renews (lease.ts) from claim to result;
 *   every process sweeps expired leases and requeues their jobs, up to maxAttempts deliveries, then finishes
 *   the operation with a message saying so. Only the current lease holder's result is recorded (once).
 * - Affinity: a worker slot waiting for work registers the persistent-worker keys it is warm for; a job of such
 *   a key is handed to it before any other waiting slot, and claims prefer such jobs (worker-slot.ts).
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
import { ExecutionStage_Value } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import {
  type ActionPlatform,
  describeWorkerPlatform,
  unmatchedProperties,
  type WorkerPlatform,
} from '../../reapi/platform.ts';
import { Code, RpcError } from '../../reapi/grpc-status.ts';
import {
  type Caller,
  type ExecutionJob,
  MAX_WAITERS,
  type OperationState,
  type Scheduler,
  type SchedulerStats,
  type Standing,
  standingView,
  type WorkerInfo,
  type WorkerSlot,
} from '../scheduler.ts';
import { formatDigest } from '../../../shared/digest.ts';
import {
  affinityKey,
  decodeResponse,
  decodeWorkerSpec,
  encodeJob,
  parseStoredDigest,
  queueSpec,
  statusResponse,
} from './codec.ts';
import { FleetConnection, type FleetOptions } from './fleet-connection.ts';
import { fleetWorkers, queueFigures } from './fleet-status.ts';
import type { EventListener } from './events.ts';
import { HeldLeases } from './lease.ts';
import { wakeWorkers } from './live-workers.ts';
import { joinFleet } from './worker-slot.ts';

export type RedisSchedulerOptions = FleetOptions;

export class RedisScheduler implements Scheduler {
  /** Leases held by this process's workers: close() hands their jobs back. */
  private readonly leases = new HeldLeases();
  private readonly slots = new Set<WorkerSlot>();
  private readonly sweeper: NodeJS.Timeout;
  /** Operations submitted here, routed from the reply channel for their submitter's subscribe() (arm()). */
  private readonly armed = new Map<string, Armed>();
  /** This frontend's reply channel id (scripts.ts, `P reply:ID`), and where its events go, by operation name. */
  private readonly replyId = randomUUID();
  private readonly routes = new Map<string, EventListener>();
  /** The reply channel's subscription, made at the first submit and kept for this scheduler's life. */
  private replying: Promise<() => void> | null = null;
  /** Those subscribe() adopted, while subscribed: get() answers their submitter from what they heard. */
  private readonly following = new Map<string, Armed>();

  /** A scheduler over an open fleet connection, which it then owns: close() closes it. */
  constructor(private readonly fleet: FleetConnection) {
    // Every process sweeps; the script is atomic, so an expired lease is requeued once however many run it.
    this.sweeper = setInterval(() => void this.sweep().catch(() => {}), Math.max(100, fleet.config.leaseMs / 3));
    this.sweeper.unref();
  }

  /** Connects and checks that Redis answers, so a wrong --queue fails at start, not at the first action. */
  static async open(options: RedisSchedulerOptions): Promise<RedisScheduler> {
    return new RedisScheduler(await FleetConnection.open(options));
  }

  async submit(job: Omit<ExecutionJob, 'operation'>, mergeKey: string | null, waiter: string): Promise<OperationState> {
    const { fleet } = this;
    return fleet.guard(async () => {
      const queue = queueSpec(job.platform);
      const name = `operations/${randomUUID()}`;
      // The submitter follows the operation next (subscribe, then get): its route from the reply channel is set
      // now, before the script runs, so that subscribe() finds it ready and costs no round trip.
      const arming = this.arm(name);
      const [submitted, armed] = await Promise.allSettled([
        fleet.script<[string, number, ...string[]]>(
          'submit',
          name,
          encodeJob(job),
          formatDigest(job.actionDigest),
          mergeKey ?? '',
          queue.key,
          queue.spec,
          job.priority,
          fleet.config.inFlightTtlMs,
          job.instance,
          waiter,
          MAX_WAITERS,
          affinityKey(job.platform),
          fleet.config.heartbeatMs,
          this.replyId,
        ),
        arming,
      ]);
      if (submitted.status === 'rejected' || submitted.value[1] !== CREATED) this.disarm(name);
      if (submitted.status === 'rejected') throw submitted.reason;
      if (armed.status === 'rejected') this.disarm(name);
      const [opName, outcome, ...specs] = submitted.value;
      if (outcome === CREATED) this.created(name, job, waiter, Number(specs[0]), Number(specs[1]) === WATCHED);
      if (outcome === NO_WORKER) unrunnable(job.platform, specs.map(decodeWorkerSpec));
      if (outcome === MERGED) return (await this.get(opName, { id: waiter, operator: false })) ?? queued(opName, job);
      return queued(opName, job);
    });
  }

  /**
   * Routes the events of operation `name`, about to be created here, from the reply channel (subscribed first if
   * it is not yet) for the subscribe() that follows its submit. Nothing is called until subscribe() adopts it;
   * unadopted (the submitter left), it is dropped after ARMED_MS. A failure leaves nothing armed: subscribe() then
   * subscribes the operation's own channel.
   */
  private async arm(name: string): Promise<void> {
    const armed: Armed = {
      listener: null,
      since: performance.now(),
      stop: () => {},
      timer: undefined,
      waiter: null,
      view: null,
      heard: [],
    };
    this.armed.set(name, armed);
    const route: EventListener = (message) => {
      if (armed.waiter === null) armed.heard.push(message);
      else armed.view = followed(armed.view, message);
      armed.listener?.();
    };
    this.routes.set(name, route);
    armed.stop = () => {
      if (this.routes.get(name) === route) this.routes.delete(name);
    };
    try {
      await this.replyChannel();
    } catch (err) {
      armed.stop();
      if (this.armed.get(name) === armed) this.armed.delete(name);
      throw err;
    }
    if (this.armed.get(name) !== armed) {
      armed.stop();
      return;
    }
    armed.timer = setTimeout(() => this.disarm(name), ARMED_MS);
    armed.timer.unref();
  }

  /**
   * The reply channel's subscription, made once: its messages are `NAME EVENT`, each for the route of operation
   * NAME; a message without a name ('changed', after a reconnection: anything may have been missed) is for all.
   */
  private replyChannel(): Promise<() => void> {
    if (this.replying !== null) return this.replying;
    const replying = this.fleet.events.listenOn(this.fleet.key('reply', this.replyId), (message) => {
      const space = message.indexOf(' ');
      if (space < 0) for (const route of [...this.routes.values()]) route(message);
      else this.routes.get(message.slice(0, space))?.(message.slice(space + 1));
    });
    this.replying = replying;
    // A failed SUBSCRIBE is tried again at the next submit.
    replying.catch(() => {
      if (this.replying === replying) this.replying = null;
    });
    return replying;
  }

  /**
   * What submit created: when its channel was subscribed before the script ran (`watched`), every change since is
   * heard on it, so the operation's state is known here from the script's answer and those events (followed()),
   * and get() answers its submitter without reading Redis, for as long as the subscription lasts.
   */
  private created(name: string, job: Omit<ExecutionJob, 'operation'>, waiter: string, stage: number, watched: boolean) {
    const armed = this.armed.get(name);
    if (armed === undefined) return;
    armed.waiter = waiter;
    // Events heard between the script and its answer.
    const heard = armed.heard.splice(0);
    if (!watched) return;
    let view: OperationState | null = { ...queued(name, job), stage: stage as ExecutionStage_Value };
    for (const message of heard) view = followed(view, message);
    armed.view = view;
  }

  /** get() reads operation `name` from Redis from now on: it is about to be changed from here. */
  private forget(name: string): void {
    for (const map of [this.armed, this.following]) {
      const record = map.get(name);
      if (record === undefined) continue;
      record.view = null;
    }
  }

  /** Drops what arm(name) subscribed, unless subscribe() adopted it. */
  private disarm(name: string): void {
    const armed = this.armed.get(name);
    if (armed === undefined) return;
    this.armed.delete(name);
    clearTimeout(armed.timer);
    armed.stop();
  }

  async get(name: string, caller: Caller): Promise<OperationState | null> {
    const { fleet } = this;
    const followedHere = this.following.get(name);
    if (followedHere?.view != null && followedHere.waiter === caller.id)
      return standingView(followedHere.view, 'waiting', caller);
    return fleet.guard(async () => {
      const [stage, done, response, digest, instance, mine] = await fleet.redis.hmget(
        fleet.key('op', name),
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
    const { fleet } = this;
    const armed = this.armed.get(name);
    if (armed?.timer !== undefined) {
      this.armed.delete(name);
      clearTimeout(armed.timer);
      armed.listener = listener;
      this.following.set(name, armed);
      const stop = () => {
        if (this.following.get(name) === armed) this.following.delete(name);
        armed.stop();
      };
      // Submitted here, its channel subscribed before submit returned, and asked for sooner than Redis could
      // forget it (no sooner than retainMs after it finished, or inFlightTtlMs after it was created): nothing to ask.
      const { retainMs, inFlightTtlMs } = fleet.config;
      if (performance.now() - armed.since < Math.min(retainMs, inFlightTtlMs)) return stop;
      const exists = await fleet
        .guard(() => fleet.redis.exists(fleet.key('op', name)))
        .catch((err: unknown) => {
          stop();
          throw err;
        });
      if (exists === 1) return stop;
      stop();
      return null;
    }
    return fleet.guard(async () => {
      // Both at once: whoever reads the state after this returns sees every later change.
      const [listening, existing] = await Promise.allSettled([
        fleet.events.listen(name, () => listener()),
        fleet.redis.exists(fleet.key('op', name)),
      ]);
      if (listening.status === 'rejected') throw listening.reason;
      const stop = listening.value;
      if (existing.status === 'rejected') {
        stop();
        throw existing.reason;
      }
      if (existing.value === 0) {
        stop();
        return null;
      }
      return stop;
    });
  }

  async cancel(name: string, caller: Caller): Promise<boolean> {
    const { fleet } = this;
    this.forget(name);
    return fleet.guard(async () => {
      const cancelled = statusResponse(Code.CANCELLED, 'cancelled before it ran');
      const operator = caller.operator ? 1 : 0;
      return (await fleet.script<number>('cancel', name, caller.id, operator, cancelled, fleet.config.retainMs)) === 1;
    });
  }

  async join(worker: WorkerInfo): Promise<WorkerSlot> {
    const slot = await this.fleet.guard(() => joinFleet(this.fleet, this.leases, worker));
    this.slots.add(slot);
    return {
      take: async (signal) => {
        const lease = await slot.take(signal);
        return {
          ...lease,
          // A change made here is read back at once, not when its event comes.
          complete: (response, options) => {
            this.forget(lease.job.operation);
            return lease.complete(response, options);
          },
        };
      },
      leave: async () => {
        this.slots.delete(slot);
        await slot.leave();
      },
    };
  }

  async stats(): Promise<SchedulerStats> {
    const { fleet } = this;
    return fleet.guard(async () => {
      const [counts, running, queues, workers] = await Promise.all([
        fleet.redis.hgetall(fleet.key('stats')),
        fleet.redis.zcard(fleet.key('leases')),
        queueFigures(fleet),
        fleetWorkers(fleet),
      ]);
      const count = (field: string) => Number(counts[field] ?? 0);
      return {
        queued: queues.reduce((sum, q) => sum + q.queued, 0),
        queues,
        workers,
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
    for (const name of [...this.armed.keys()]) this.disarm(name);
    void this.replying?.then((stop) => stop()).catch(() => {});
    await this.leases.handBack(this.fleet.config.shutdownGraceMs);
    await Promise.all([...this.slots].map((slot) => slot.leave().catch(() => {})));
    await this.fleet.close();
  }

  /**
   * Requeues jobs whose leases expired (or fails them after maxAttempts), and wakes workers for the requeued;
   * fails queued jobs that no live worker has been able to take for strandedGraceMs.
   */
  private async sweep(): Promise<void> {
    const { fleet } = this;
    const { heartbeatMs, strandedGraceMs, retainMs } = fleet.config;
    await this.sweepLeases();
    const stranded = statusResponse(
      Code.UNAVAILABLE,
      `no live worker can run this action any more: every worker that could take it left or stopped heartbeating (for ${Math.round((heartbeatMs + strandedGraceMs) / 1000)} s or more) while it was queued`,
    );
    const failed = await fleet.script<number>('stranded', heartbeatMs, strandedGraceMs, stranded, retainMs);
    if (failed > 0) fleet.log.warn('failed queued actions that no live worker can take', { count: failed });
  }

  private async sweepLeases(): Promise<void> {
    const { fleet } = this;
    const { maxAttempts, retainMs } = fleet.config;
    const gaveUp = statusResponse(
      Code.UNAVAILABLE,
      `the action was given to ${maxAttempts} workers in turn and each stopped renewing its lease (it crashed, was killed or lost Redis); larder gave up rather than run it again`,
    );
    const cancelled = statusResponse(Code.CANCELLED, 'the action was cancelled');
    const requeued = await fleet.script<string[]>('sweep', maxAttempts, gaveUp, cancelled, retainMs);
    if (requeued.length === 0) return;
    fleet.log.info('requeued actions whose workers stopped renewing their leases', { count: requeued.length });
    await wakeWorkers(fleet, requeued);
  }
}

/** What the submit script answers: a new operation, one in flight it joined, or no live worker matched. */
const CREATED = 0;
const MERGED = 1;
/** The submit script's answer for a new operation whose channel was subscribed before it ran. */
const WATCHED = 1;
const NO_WORKER = 2;

/** A route arm() made for a submitter, and the listener subscribe() gave it (null until then). */
interface Armed {
  listener: (() => void) | null;
  /** The submitter, once the operation is created (created()). */
  waiter: string | null;
  /** The operation's state as submit's answer and the events since tell it; null when not known that way. */
  view: OperationState | null;
  /** Events heard before submit's answer came. */
  heard: string[];
  /** When arm() began: before the submit script was sent (performance.now()). */
  since: number;
  stop: () => void;
  /** Set once the reply channel is subscribed: only then may subscribe() adopt it. */
  timer: NodeJS.Timeout | undefined;
}

/**
 * How long a route armed for a submitter waits for its subscribe(): the Execution service calls it as soon as
 * submit returns; this only bounds what a submitter that never follows leaves routed.
 */
const ARMED_MS = 10_000;

/**
 * The state after event `message` of an operation known to be in state `view`: it went to a worker, or finished
 * (with its response); null (not known any more: read it) after any other change, or a reconnection.
 */
function followed(view: OperationState | null, message: string): OperationState | null {
  if (view === null || view.done) return null;
  if (message === 'executing') return { ...view, stage: ExecutionStage_Value.EXECUTING };
  if (message.startsWith(DONE)) {
    const response = decodeResponse(message.slice(DONE.length));
    return { ...view, stage: ExecutionStage_Value.COMPLETED, done: true, response };
  }
  return null;
}

/** How the finish of an operation is published: this, then its response (scripts.ts, FINISH). */
const DONE = 'done:';

function queued(name: string, job: Omit<ExecutionJob, 'operation'>): OperationState {
  return {
    name,
    instance: job.instance,
    actionDigest: job.actionDigest,
    stage: ExecutionStage_Value.QUEUED,
    done: false,
  };
}

/** FAILED_PRECONDITION for an action no live worker could run, naming what nobody offers. */
function unrunnable(platform: ActionPlatform, workers: readonly WorkerPlatform[]): never {
  if (workers.length === 0)
    throw new RpcError(Code.FAILED_PRECONDITION, 'no worker is connected to the queue to execute actions');
  let closest: string[] | null = null;
  for (const worker of workers) {
    const unmatched = unmatchedProperties(platform, worker);
    if (closest === null || unmatched.length < closest.length) closest = unmatched;
  }
  const offered = [...new Set(workers.map((w) => describeWorkerPlatform(w)))].map((p) => `[${p}]`).join(' ');
  throw new RpcError(
    Code.FAILED_PRECONDITION,
    `no worker can run this action: none offers ${closest!.join(', ')} (workers offer ${offered})`,
  );
}
