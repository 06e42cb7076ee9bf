/**
 * The seam between the Execution service (which submits and follows operations) and workers (which take and
 * finish them). `larder executor` uses the in-memory scheduler (memory-scheduler.ts) by default, and a fleet
 * (`--queue redis://…`, frontends and `larder worker` processes) the Redis-backed one (redis/redis-scheduler.ts)
 * behind the same interface, so nothing here may assume one process: jobs and updates are plain data (protobuf
 * messages serialise), and followers learn of changes by subscription, not by sharing objects.
 */
import { create } from '@bufbuild/protobuf';
import type { Digest } from '../../shared/digest.ts';
import {
  type Action,
  type Command,
  type ExecuteResponse,
  ExecuteResponseSchema,
  ExecutionStage_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { ActionPlatform, WorkerPlatform } from '../reapi/platform.ts';
import { Code } from '../reapi/grpc-status.ts';

/** Everything a worker needs to run one action, fetched and checked by the frontend. */
export interface ExecutionJob {
  /** The operation's name, `operations/<uuid>`. */
  readonly operation: string;
  readonly instance: string;
  readonly actionDigest: Digest;
  readonly action: Action;
  readonly command: Command;
  /**
   * The Action and Command exactly as read from the CAS: `action` hashes to actionDigest, `command` to the
   * Action's command_digest. The in-memory scheduler hands the job over as it is; a fleet's queue carries these
   * bytes, and a worker runs what it claims only once they hash to those digests (redis/verify-job.ts).
   */
  readonly encoded: { readonly action: Uint8Array; readonly command: Uint8Array };
  readonly platform: ActionPlatform;
  /** How long the command may run, already capped by the server's maximum. */
  readonly timeoutMs: number;
  /** REAPI priority: lower runs sooner; 0 is the default; always within PRIORITY_RANGE (checked before). */
  readonly priority: number;
  readonly queuedAt: Date;
}

/** An operation as followers see it. `response` is set exactly when `done`. */
export interface OperationState {
  readonly name: string;
  /** The instance the action was submitted to: where its outputs are in the CAS. */
  readonly instance: string;
  readonly actionDigest: Digest;
  readonly stage: ExecutionStage_Value;
  readonly done: boolean;
  readonly response?: ExecuteResponse;
}

/**
 * Who asks about an operation. Operations belong to their waiters: the principals that submitted them (merged
 * submissions add theirs). Waiters are principals, not calls: two Executes of one user are one waiter, and
 * either's cancel ends both. An operator may see and cancel every operation.
 */
export interface Caller {
  /** The principal's key (caller.ts): `basic:alice`, `oidc:SUB`, `anonymous@ADDRESS`. */
  readonly id: string;
  readonly operator: boolean;
}

/** The most waiters one operation records; a submission beyond it gets an operation of its own (not merged). */
export const MAX_WAITERS = 1000;

export interface Scheduler {
  /**
   * Queues `job` for `waiter`, or joins the operation already in flight under `mergeKey` (null: never merged,
   * as for `do_not_cache` actions), adding `waiter` to its waiters. Throws FAILED_PRECONDITION (RpcError)
   * naming the unmatched properties when no registered worker could ever run it.
   */
  submit(job: Omit<ExecutionJob, 'operation'>, mergeKey: string | null, waiter: string): Promise<OperationState>;
  /**
   * The operation as `caller` may see it (standingView): null when the name is unknown (never existed, or
   * forgotten) and equally when the caller neither waits on it nor is an operator, so a stranger learns nothing.
   */
  get(name: string, caller: Caller): Promise<OperationState | null>;
  /** Calls `listener` after every change of the operation; returns the unsubscribe function, or null when unknown. */
  subscribe(name: string, listener: () => void): Promise<(() => void) | null>;
  /**
   * `caller` cancels: a waiter stops waiting (its followers see the operation done, CANCELLED), and when no
   * waiter is left the run is stopped (a queued operation finishes CANCELLED at once, a running one is told to
   * stop). An operator that does not wait on it stops the run at once. False when get() would give null.
   */
  cancel(name: string, caller: Caller): Promise<boolean>;
  /** A worker joins with its platform; it takes only jobs whose routing constraints it satisfies. */
  join(worker: WorkerInfo): Promise<WorkerSlot>;
  /** What the scheduler has done so far, for tests, logs and (later) metrics. */
  stats(): Promise<SchedulerStats>;
  close(): Promise<void>;
}

export interface WorkerInfo {
  name: string;
  platform: WorkerPlatform;
  /**
   * Affinity, never routing: whether this worker is warm for a job (a persistent worker for its key is running).
   * A scheduler hands a job to a warm worker in preference, but never keeps it from a cold one.
   */
  warmFor?: (job: ExecutionJob) => boolean;
  /** What the worker is doing, for status pages and metrics (a fleet's workers publish it with their heartbeat). */
  report?: () => WorkerReport;
}

/** A worker's own figures since it started. */
export interface WorkerReport {
  /** Actions running now, and how many it runs at once. */
  running: number;
  slots: number;
  /** Actions finished, and of those the ones that did not succeed (a non-zero exit, a timeout, an error). */
  done: number;
  failed: number;
}

/** A live worker as the status page and `larder_workers` show it. */
export interface WorkerStatus extends WorkerReport {
  /** `HOST/ARCH/PID` for `larder worker` (ExecutedActionMetadata.worker), `HOST/POOL/N` in-process. */
  name: string;
  /** describeWorkerPlatform(): `Arch=amd64, OSFamily=linux`. */
  platform: string;
  /** Its last heartbeat (a worker of this process: now). */
  lastSeen: Date;
}

/** One platform queue: what to scale the workers that serve it by. */
export interface QueueFigures {
  /** describeActionPlatform() of the queued actions' routing constraints: `Arch=arm64, OSFamily=linux`. */
  platform: string;
  queued: number;
  /** How long the oldest queued action has waited (0 when none waits). */
  oldestQueuedSeconds: number;
}

export interface SchedulerStats {
  queued: number;
  running: number;
  /** Operations created (each ran, or will run, once). */
  submitted: number;
  /** Submissions that joined an operation already in flight instead. */
  merged: number;
  completed: number;
  /** Per platform queue (a fleet: every queue Redis knows, empty ones with 0). */
  queues: QueueFigures[];
  /** The live workers: this process's, or with a Redis queue the whole fleet's. */
  workers: WorkerStatus[];
}

export interface WorkerSlot {
  /** The next job for this worker, waiting until one is queued; rejects when `signal` aborts. */
  take(signal: AbortSignal): Promise<Lease>;
  /** The worker leaves: it takes no more jobs. */
  leave(): Promise<void>;
}

/** A job handed to one worker, which must finish it with `complete` whatever happens. */
export interface Lease {
  readonly job: ExecutionJob;
  /** Aborted when the operation is cancelled or the scheduler closes: stop the run and complete. */
  readonly signal: AbortSignal;
  /** The action left the queue and is being executed (stage EXECUTING). */
  executing(): Promise<void>;
  /**
   * Records the result once; a lease that was taken away (its worker presumed dead) records nothing. `takeFollows`:
   * the worker calls its slot's take as soon as this returns (this result frees the slot it was waiting for), so a
   * scheduler may claim the next job with the result (the Redis one does: one round trip instead of two).
   */
  complete(response: ExecuteResponse, options?: { takeFollows?: boolean }): Promise<void>;
}

/** Where a caller stands with an operation: waiting on it, detached by its own cancel, or a stranger. */
export type Standing = 'waiting' | 'detached' | 'none';

const DETACHED = create(ExecuteResponseSchema, {
  status: {
    code: Code.CANCELLED,
    message: 'you cancelled your wait on this operation (the run goes on only while other callers wait on it)',
  },
});

/** What a caller of `standing` sees of `state`: the state itself, done and CANCELLED once it cancelled, or null. */
export function standingView(state: OperationState, standing: Standing, caller: Caller): OperationState | null {
  if (standing === 'detached')
    return { ...state, stage: ExecutionStage_Value.COMPLETED, done: true, response: DETACHED };
  return standing === 'waiting' || caller.operator ? state : null;
}
