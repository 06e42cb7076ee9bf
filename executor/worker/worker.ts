/**
 * A worker: takes jobs its platform satisfies from the scheduler and runs each through runAction, at most
 * `concurrency` at once (a p-queue). It asks for the next job only when a slot is free, so a busy worker never
 * holds queued work another worker could start. In `larder executor` workers live in-process (in-process.ts), with
 * the store as their CAS; `larder worker` runs the same class in a process of its own (executor/start-worker.ts),
 * with a CAS over gRPC (grpc-cas.ts).
 */
import PQueue from 'p-queue';
import { followSignals } from '../../shared/abortable.ts';
import { formatDigest } from '../../shared/digest.ts';
import { create } from '@bufbuild/protobuf';
import type { Logger } from '../../shared/log.ts';
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { WorkerPlatform } from '../reapi/platform.ts';
import { Code } from '../reapi/grpc-status.ts';
import { actionOutcome } from '../execution/metrics.ts';
import type { Lease, Scheduler, WorkerReport } from '../scheduler/scheduler.ts';
import { type ActionEnvironment, runAction } from './run-action.ts';

export interface WorkerOptions {
  name: string;
  scheduler: Scheduler;
  platform: WorkerPlatform;
  concurrency: number;
  /** Everything runAction needs but the CAS, which depends on the job's instance. */
  environment: Omit<ActionEnvironment, 'cas' | 'workerName'> & { casFor(instance: string): ActionEnvironment['cas'] };
  log: Logger;
  /** Told of every finished action and how long it took here (metrics). */
  onFinished?: (response: ExecuteResponse, seconds: number) => void;
}

export interface RunningAction {
  operation: string;
  /** `HASH/SIZE` of the Action. */
  action: string;
  since: Date;
}

export class Worker {
  private readonly queue: PQueue;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | null = null;
  /** Actions this worker has run (each Lease once), for tests and logs. */
  executed = 0;
  /** Actions finished here, and those of them that did not succeed (what its report says). */
  private done = 0;
  private failed = 0;
  /** The actions running here, by operation name. */
  private readonly runs = new Map<string, RunningAction>();

  constructor(private readonly options: WorkerOptions) {
    this.queue = new PQueue({ concurrency: options.concurrency });
  }

  get platform(): WorkerPlatform {
    return this.options.platform;
  }

  /** What it is doing and has done: the status page's row and the heartbeat's report. */
  report(): WorkerReport {
    return { running: this.queue.pending, slots: this.options.concurrency, done: this.done, failed: this.failed };
  }

  /** The actions running here now (the worker's status page). */
  running(): RunningAction[] {
    return [...this.runs.values()];
  }

  async start(): Promise<void> {
    const persistent = this.options.environment.persistentWorkers;
    const slot = await this.options.scheduler.join({
      name: this.options.name,
      platform: this.options.platform,
      warmFor: persistent === null ? undefined : (job) => persistent.isWarmFor(job),
      report: () => this.report(),
    });
    this.loop = this.takeJobs(slot.take).finally(() => slot.leave());
  }

  /** Takes no more jobs and waits for the running ones to finish. */
  async stop(): Promise<void> {
    this.stopping.abort(new Error('worker stopping'));
    await this.loop;
    await this.queue.onIdle();
  }

  private async takeJobs(take: (signal: AbortSignal) => Promise<Lease>): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      while (this.queue.pending + this.queue.size >= this.options.concurrency)
        await new Promise((resolve) => this.queue.once('next', resolve));
      let lease: Lease;
      try {
        lease = await take(signal);
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      }
      void this.queue.add(() => this.run(lease));
    }
  }

  private async run(lease: Lease): Promise<void> {
    const { job } = lease;
    const { log } = this.options;
    await lease.executing();
    this.executed++;
    this.runs.set(job.operation, {
      operation: job.operation,
      action: formatDigest(job.actionDigest),
      since: new Date(),
    });
    log.debug('executing', { worker: this.options.name, action: job.actionDigest.hash, operation: job.operation });
    const cancelled = followSignals([lease.signal, this.stopping.signal]);
    const started = performance.now();
    const finished = (response: ExecuteResponse) => {
      this.done++;
      if (actionOutcome(response) !== 'success') this.failed++;
      this.options.onFinished?.(response, (performance.now() - started) / 1000);
    };
    let response: ExecuteResponse | undefined;
    try {
      const env = {
        ...this.options.environment,
        cas: this.options.environment.casFor(job.instance),
        workerName: this.options.name,
      };
      const run = await runAction(job, env, cancelled.signal).finally(cancelled.release);
      response = run.response;
      log.debug('executed', {
        worker: this.options.name,
        action: job.actionDigest.hash,
        exit: response.result?.exitCode,
        status: response.status?.code,
      });
      finished(response);
      // The slot stays taken until the action's files are gone and its action cache write is done, so a busy worker
      // cannot pile up folders to delete or writes under way.
      // With every slot busy, the take loop waits for this one: it takes next, as soon as this run returns.
      const takeFollows = this.queue.pending >= this.options.concurrency && !this.stopping.signal.aborted;
      await lease.complete(response, { takeFollows }).finally(run.finish);
    } catch (err) {
      // runAction turns every failure into a response; this is the last line of defence.
      log.error('worker failed on an action', { action: job.actionDigest.hash, error: (err as Error).message });
      const failure = create(ExecuteResponseSchema, {
        status: { code: Code.INTERNAL, message: `worker failure: ${(err as Error).message}` },
      });
      if (response === undefined) finished(failure);
      await lease.complete(failure);
    } finally {
      this.runs.delete(job.operation);
    }
  }
}
