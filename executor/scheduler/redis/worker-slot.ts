/**
 * A worker's side of the Redis scheduler: registration with heartbeats, blocking takes, and leases that renew
 * themselves from claim to result.
 *
 * Each joined slot has its own identity (`NAME#RANDOM`), so a restarted worker on the same host and port is
 * never taken for the old one, and its own blocking connection (BLPOP holds a connection while it waits).
 * A lease renews every third of leaseMs while the job is fetched, run and uploaded, so only a worker that
 * stopped (or lost Redis for longer than a lease) loses its job; large input fetches do not outlive it.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { errorForLog } from '../../../shared/errors.ts';
import type { ExecuteResponse } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { WorkerPlatform } from '../../execution/platform.ts';
import { callStatus, Code, RpcError } from '../../grpc-status.ts';
import type { ExecutionJob, Lease, WorkerSlot } from '../scheduler.ts';
import { decodeJob, encodeResponse, statusResponse, workerSpec } from './codec.ts';
import type { RedisScheduler } from './redis-scheduler.ts';
import { verifyJob } from './verify-job.ts';

export async function joinFleet(
  scheduler: RedisScheduler,
  worker: { name: string; platform: WorkerPlatform },
): Promise<WorkerSlot> {
  const id = `${worker.name}#${randomUUID().slice(0, 8)}`;
  const spec = workerSpec(worker.platform);
  const { heartbeatMs, wakeTimeoutMs } = scheduler.config;
  const beat = () => scheduler.script('heartbeat', id, spec.spec, spec.key);
  await beat();
  const heartbeat = setInterval(() => void beat().catch(() => {}), heartbeatMs / 3);
  heartbeat.unref();
  let blocking: Redis | null = null;

  /** Waits for a wake marker (or wakeTimeoutMs), however the caller's signal or the scheduler's close ends it. */
  async function waitForWork(signal: AbortSignal): Promise<void> {
    blocking ??= scheduler.connect('blocking', { maxRetriesPerRequest: null });
    const connection = blocking;
    const stop = () => {
      // A blocked BLPOP cannot be withdrawn; dropping its connection ends it (the next wait opens another).
      if (blocking === connection) blocking = null;
      connection.disconnect();
    };
    const signals = AbortSignal.any([signal, scheduler.closing.signal]);
    if (signals.aborted) throw signals.reason;
    signals.addEventListener('abort', stop, { once: true });
    try {
      await connection.blpop(scheduler.key('wake', spec.key), Math.max(1, Math.round(wakeTimeoutMs / 1000)));
    } catch (err) {
      if (signals.aborted) throw signals.reason;
      throw err;
    } finally {
      signals.removeEventListener('abort', stop);
    }
  }

  async function take(signal: AbortSignal): Promise<Lease> {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      if (scheduler.closing.signal.aborted) {
        // A closing scheduler hands out nothing more; the worker's own stop ends this wait.
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
      const token = randomUUID();
      let claimed: [string, string, number] | null = null;
      try {
        claimed = await scheduler.script<[string, string, number] | null>(
          'claim',
          spec.spec,
          id,
          token,
          scheduler.config.leaseMs,
        );
      } catch (err) {
        // Redis is away: wait for it rather than spin (the blocking connection's own retries pace this).
        scheduler.log.warn('could not ask the queue for work', { worker: id, error: (err as Error).message });
      }
      if (claimed !== null && claimed[1] !== '') {
        const job = await verified(claimed[0], claimed[1], token);
        if (job !== null) return holdLease(scheduler, id, claimed[0], job, token);
        continue;
      }
      if (claimed === null)
        await waitForWork(signal).catch((err) => {
          if (signal.aborted || scheduler.closing.signal.aborted) return;
          scheduler.log.warn('waiting for work failed', { worker: id, error: (err as Error).message });
        });
    }
  }

  /**
   * The claimed job, once verifyJob has found it to be what its digests say; otherwise it is failed at once with
   * the reason (nothing run, nothing cached) and null returned, so the worker goes on to the next.
   */
  async function verified(name: string, text: string, token: string): Promise<ExecutionJob | null> {
    try {
      return verifyJob(decodeJob(name, text), worker.platform);
    } catch (err) {
      const { code, details } = callStatus(err);
      scheduler.log.warn(
        'refused a queued job that does not match its action digest: was it written to Redis by something other than a larder frontend?',
        { worker: id, operation: name, error: errorForLog(err) },
      );
      const response = statusResponse(code, `larder refused to run this job: ${details}`);
      await scheduler.script('complete', name, token, response, scheduler.config.retainMs).catch((e: Error) =>
        // The lease expires, and the job goes to another worker, which refuses it too.
        scheduler.log.warn('could not record a refused job', { operation: name, error: e.message }),
      );
      return null;
    }
  }

  return {
    take,
    async leave() {
      clearInterval(heartbeat);
      blocking?.disconnect();
      await scheduler.redis.hdel(scheduler.key('workers'), id).catch(() => {});
    },
  };
}

function holdLease(scheduler: RedisScheduler, workerId: string, name: string, job: ExecutionJob, token: string): Lease {
  const { leaseMs, retainMs } = scheduler.config;
  const controller = new AbortController();
  let settle!: () => void;
  const settled = new Promise<void>((resolve) => (settle = resolve));
  scheduler.held.add(settled);

  const onClose = () => controller.abort(scheduler.closing.signal.reason);
  scheduler.closing.signal.addEventListener('abort', onClose, { once: true });
  const cancelled = () => controller.abort(new RpcError(Code.CANCELLED, 'the operation was cancelled'));
  // Cancellation reaches the holder at once by pub/sub, and at its next renewal should that message be lost.
  const listening = scheduler.events.listen(name, (message) => message === 'cancel' && cancelled()).catch(() => null);

  const renew = async () => {
    try {
      const answer = await scheduler.script<number>('renew', name, token, leaseMs);
      if (answer === 0)
        controller.abort(
          new RpcError(
            Code.ABORTED,
            'this worker lost its lease on the action (it was presumed dead); another worker runs it',
          ),
        );
      if (answer === 2) cancelled();
    } catch (err) {
      // Keep running: if Redis comes back before the lease expires, nothing was lost.
      scheduler.log.warn('could not renew a lease', {
        worker: workerId,
        operation: name,
        error: (err as Error).message,
      });
    }
  };
  const renewal = setInterval(() => void renew(), leaseMs / 3);

  const release = () => {
    clearInterval(renewal);
    scheduler.closing.signal.removeEventListener('abort', onClose);
    void listening.then((stop) => stop?.());
    scheduler.held.delete(settled);
    settle();
  };

  return {
    job,
    signal: controller.signal,
    async executing() {
      await scheduler
        .script('executing', name, token)
        .catch((err: Error) =>
          scheduler.log.warn('could not mark an action executing', { operation: name, error: err.message }),
        );
    },
    async complete(response: ExecuteResponse) {
      try {
        if (scheduler.closing.signal.aborted && controller.signal.reason === scheduler.closing.signal.reason) {
          const queue = await retried(() => scheduler.script<string | null>('release', name, token));
          if (queue) await scheduler.wake([queue]);
          return;
        }
        const recorded = await retried(() =>
          scheduler.script<number>('complete', name, token, encodeResponse(response), retainMs),
        );
        if (recorded === 0)
          scheduler.log.info('result not recorded: the lease was lost and the action went to another worker', {
            worker: workerId,
            operation: name,
          });
      } catch (err) {
        // The lease will expire and the action run again elsewhere: at least once, never lost.
        scheduler.log.error('could not record a result; the action will run again', {
          worker: workerId,
          operation: name,
          error: (err as Error).message,
        });
      } finally {
        release();
      }
    },
  };

  /** A result is worth waiting for Redis a while (a restart); the lease holds meanwhile, as renewals go on. */
  async function retried<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= 30) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, attempt * 200)));
      }
    }
  }
}
