/**
 * The embedded scheduler: one process, operations in memory. Queued jobs wait in priority order (then first
 * come, first served); a worker that asks for work gets the first job whose routing constraints it satisfies.
 * Identical cacheable actions in flight share one operation, which records its waiters; the run is stopped
 * when the last of them cancels. Finished operations are remembered for a while (bounded in time and number)
 * so that WaitExecution can still collect their result.
 */
import { create } from '@bufbuild/protobuf';
import { randomUUID } from 'node:crypto';
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
  ExecutionStage_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import {
  type ActionPlatform,
  describeActionPlatform,
  describeWorkerPlatform,
  unmatchedProperties,
} from '../reapi/platform.ts';
import { Code, RpcError } from '../reapi/grpc-status.ts';
import {
  type Caller,
  type ExecutionJob,
  type Lease,
  MAX_WAITERS,
  type OperationState,
  type QueueFigures,
  type Scheduler,
  type SchedulerStats,
  standingView,
  type WorkerInfo,
  type WorkerSlot,
} from './scheduler.ts';

export interface MemorySchedulerOptions {
  /** How long a finished operation stays available to WaitExecution/GetOperation. Default 10 minutes. */
  retainMs?: number;
  /** At most this many finished operations are remembered; the oldest go first. Default 10,000. */
  retainCount?: number;
  now?: () => number;
}

interface Operation {
  state: OperationState;
  readonly job: ExecutionJob;
  readonly mergeKey: string | null;
  /** Principal key → still waiting (true) or detached by its own cancel (false). */
  readonly waiters: Map<string, boolean>;
  readonly listeners: Set<() => void>;
  readonly cancel: AbortController;
  finishedAt?: number;
}

interface Waiter {
  readonly worker: WorkerInfo;
  readonly deliver: (operation: Operation) => void;
}

/** The most platforms whose queue figures are kept once their queue is empty. */
const MAX_PLATFORMS = 256;

/** How far down the queue a worker looks for a job it is warm for before taking the first it can run. */
const AFFINITY_WINDOW = 32;

export class MemoryScheduler implements Scheduler {
  private readonly operations = new Map<string, Operation>();
  private readonly inFlight = new Map<string, Operation>();
  private readonly queue: Operation[] = [];
  /** Operations a worker holds. */
  private readonly leased = new Set<Operation>();
  private readonly waiters = new Set<Waiter>();
  private readonly workers = new Set<WorkerInfo>();
  /** Finished operations in the order they finished, for pruning. */
  private readonly finished: Operation[] = [];
  private readonly counts = { submitted: 0, merged: 0, completed: 0 };
  /**
   * The platforms actions were queued for, so their figures stay (at 0) once the queue empties, as a fleet's do:
   * a scaler reads 0, not a series that vanished. Bounded: the longest unused go first.
   */
  private readonly platforms = new Set<string>();
  private readonly retainMs: number;
  private readonly retainCount: number;
  private readonly now: () => number;

  constructor(options: MemorySchedulerOptions = {}) {
    this.retainMs = options.retainMs ?? 10 * 60_000;
    this.retainCount = options.retainCount ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  async submit(job: Omit<ExecutionJob, 'operation'>, mergeKey: string | null, waiter: string): Promise<OperationState> {
    const joined = mergeKey === null ? undefined : this.inFlight.get(mergeKey);
    if (joined !== undefined && (joined.waiters.size < MAX_WAITERS || joined.waiters.has(waiter))) {
      this.counts.merged++;
      joined.waiters.set(waiter, true);
      return joined.state;
    }
    this.checkRunnable(job.platform);
    this.remember(describeActionPlatform(job.platform));
    const name = `operations/${randomUUID()}`;
    const operation: Operation = {
      state: {
        name,
        instance: job.instance,
        actionDigest: job.actionDigest,
        stage: ExecutionStage_Value.QUEUED,
        done: false,
      },
      job: { ...job, operation: name },
      mergeKey,
      waiters: new Map([[waiter, true]]),
      listeners: new Set(),
      cancel: new AbortController(),
    };
    this.operations.set(name, operation);
    // A full operation (MAX_WAITERS) stays the one later submissions join until it finishes.
    if (mergeKey !== null && joined === undefined) this.inFlight.set(mergeKey, operation);
    this.counts.submitted++;
    this.enqueue(operation);
    return operation.state;
  }

  async get(name: string, caller: Caller): Promise<OperationState | null> {
    this.prune();
    const operation = this.operations.get(name);
    if (operation === undefined) return null;
    const waiting = operation.waiters.get(caller.id);
    return standingView(operation.state, waiting === undefined ? 'none' : waiting ? 'waiting' : 'detached', caller);
  }

  async subscribe(name: string, listener: () => void): Promise<(() => void) | null> {
    const operation = this.operations.get(name);
    if (operation === undefined) return null;
    operation.listeners.add(listener);
    return () => void operation.listeners.delete(listener);
  }

  async cancel(name: string, caller: Caller): Promise<boolean> {
    const operation = this.operations.get(name);
    if (operation === undefined) return false;
    const waiting = operation.waiters.get(caller.id);
    if (waiting === undefined && !caller.operator) return false;
    if (operation.state.done) return true;
    if (waiting === true) {
      operation.waiters.set(caller.id, false);
      this.notify(operation);
      if ([...operation.waiters.values()].some(Boolean)) return true;
    } else if (waiting === false && !caller.operator) {
      return true; // already detached: nothing more is this caller's to stop
    }
    this.stop(operation);
    return true;
  }

  /** Stops the run: nobody joins it any more, a queued one finishes CANCELLED now, a running one is told to. */
  private stop(operation: Operation): void {
    if (operation.mergeKey !== null && this.inFlight.get(operation.mergeKey) === operation)
      this.inFlight.delete(operation.mergeKey);
    operation.cancel.abort(new RpcError(Code.CANCELLED, 'the operation was cancelled'));
    const queuedAt = this.queue.indexOf(operation);
    if (queuedAt >= 0) {
      this.queue.splice(queuedAt, 1);
      this.finish(
        operation,
        create(ExecuteResponseSchema, { status: { code: Code.CANCELLED, message: 'cancelled before it ran' } }),
      );
    }
  }

  async join(worker: WorkerInfo): Promise<WorkerSlot> {
    const member: WorkerInfo = { ...worker };
    this.workers.add(member);
    return {
      take: (signal) => this.take(member, signal),
      leave: async () => void this.workers.delete(member),
    };
  }

  async stats(): Promise<SchedulerStats> {
    const now = this.now();
    const workers = [...this.workers].map((w) => ({
      name: w.name,
      platform: describeWorkerPlatform(w.platform),
      ...(w.report?.() ?? { running: 0, slots: 0, done: 0, failed: 0 }),
      lastSeen: new Date(now),
    }));
    return { queued: this.queue.length, running: this.leased.size, ...this.counts, queues: this.queues(now), workers };
  }

  private remember(platform: string): void {
    this.platforms.delete(platform);
    this.platforms.add(platform);
    if (this.platforms.size > MAX_PLATFORMS) this.platforms.delete(this.platforms.values().next().value!);
  }

  /** The queued jobs by platform, with the oldest one's wait (a requeue never happens here: queuedAt is arrival). */
  private queues(now: number): QueueFigures[] {
    const byPlatform = new Map<string, QueueFigures>(
      [...this.platforms].map((platform) => [platform, { platform, queued: 0, oldestQueuedSeconds: 0 }]),
    );
    for (const { job } of this.queue) {
      const platform = describeActionPlatform(job.platform);
      const figures = byPlatform.get(platform) ?? { platform, queued: 0, oldestQueuedSeconds: 0 };
      figures.queued++;
      figures.oldestQueuedSeconds = Math.max(figures.oldestQueuedSeconds, (now - job.queuedAt.getTime()) / 1000);
      byPlatform.set(platform, figures);
    }
    return [...byPlatform.values()];
  }

  async close(): Promise<void> {
    for (const operation of this.operations.values()) {
      if (!operation.state.done) operation.cancel.abort(new RpcError(Code.UNAVAILABLE, 'the server is shutting down'));
    }
    for (const operation of this.queue.splice(0)) {
      this.finish(
        operation,
        create(ExecuteResponseSchema, {
          status: { code: Code.UNAVAILABLE, message: 'the server shut down before the action ran' },
        }),
      );
    }
  }

  /** Fails fast when no worker could ever run an action of this platform, naming what nobody offers. */
  private checkRunnable(platform: ActionPlatform): void {
    if (this.workers.size === 0)
      throw new RpcError(Code.FAILED_PRECONDITION, 'this server has no workers to execute actions');
    let closest: string[] | null = null;
    for (const worker of this.workers) {
      const unmatched = unmatchedProperties(platform, worker.platform);
      if (unmatched.length === 0) return;
      if (closest === null || unmatched.length < closest.length) closest = unmatched;
    }
    const offered = [...new Set([...this.workers].map((w) => describeWorkerPlatform(w.platform)))]
      .map((p) => `[${p}]`)
      .join(' ');
    throw new RpcError(
      Code.FAILED_PRECONDITION,
      `no worker can run this action: none offers ${closest!.join(', ')} (workers offer ${offered})`,
    );
  }

  private enqueue(operation: Operation): void {
    const able = [...this.waiters].filter(
      (w) => unmatchedProperties(operation.job.platform, w.worker.platform).length === 0,
    );
    const chosen = able.find((w) => w.worker.warmFor?.(operation.job) ?? false) ?? able[0];
    if (chosen !== undefined) {
      this.waiters.delete(chosen);
      chosen.deliver(operation);
      return;
    }
    // Stable insertion: after every job of the same or a more urgent priority.
    let at = this.queue.length;
    while (at > 0 && this.queue[at - 1]!.job.priority > operation.job.priority) at--;
    this.queue.splice(at, 0, operation);
  }

  private take(worker: WorkerInfo, signal: AbortSignal): Promise<Lease> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const index = this.pick(worker);
    if (index >= 0) return Promise.resolve(this.lease(this.queue.splice(index, 1)[0]!));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        worker,
        deliver: (operation) => {
          signal.removeEventListener('abort', abandon);
          resolve(this.lease(operation));
        },
      };
      const abandon = () => {
        this.waiters.delete(waiter);
        reject(signal.reason);
      };
      signal.addEventListener('abort', abandon, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** The queue index of the job `worker` should take: one it is warm for near the front, else the first it can run. */
  private pick(worker: WorkerInfo): number {
    let first = -1;
    let seen = 0;
    for (let i = 0; i < this.queue.length && seen < AFFINITY_WINDOW; i++) {
      const job = this.queue[i]!.job;
      if (unmatchedProperties(job.platform, worker.platform).length > 0) continue;
      if (worker.warmFor?.(job)) return i;
      if (first < 0) first = i;
      seen++;
    }
    return first >= 0
      ? first
      : this.queue.findIndex((op) => unmatchedProperties(op.job.platform, worker.platform).length === 0);
  }

  private lease(operation: Operation): Lease {
    this.leased.add(operation);
    return {
      job: operation.job,
      signal: operation.cancel.signal,
      executing: async () => this.update(operation, { ...operation.state, stage: ExecutionStage_Value.EXECUTING }),
      complete: async (response) => this.finish(operation, response),
    };
  }

  private finish(operation: Operation, response: ExecuteResponse): void {
    if (operation.state.done) return;
    if (operation.mergeKey !== null && this.inFlight.get(operation.mergeKey) === operation)
      this.inFlight.delete(operation.mergeKey);
    this.leased.delete(operation);
    operation.finishedAt = this.now();
    this.finished.push(operation);
    this.counts.completed++;
    this.update(operation, { ...operation.state, stage: ExecutionStage_Value.COMPLETED, done: true, response });
    this.prune();
  }

  private update(operation: Operation, state: OperationState): void {
    operation.state = state;
    this.notify(operation);
  }

  private notify(operation: Operation): void {
    for (const listener of [...operation.listeners]) listener();
  }

  private prune(): void {
    const expired = this.now() - this.retainMs;
    while (
      this.finished.length > 0 &&
      (this.finished.length > this.retainCount || this.finished[0]!.finishedAt! < expired)
    ) {
      this.operations.delete(this.finished.shift()!.state.name);
    }
  }
}
