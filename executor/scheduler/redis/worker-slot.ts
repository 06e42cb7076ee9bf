/**
 * A worker's side of the Redis scheduler: registration with heartbeats, blocking takes, and the claimed job's
 * lease (lease.ts).
 *
 * Each joined slot has its own identity (`NAME#RANDOM`), so a restarted worker on the same host and port is
 * never taken for the old one, and its own blocking connection (BLPOP holds a connection while it waits).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { errorForLog } from '../../../shared/errors.ts';
import { callStatus } from '../../reapi/grpc-status.ts';
import type { ExecutionJob, Lease, WorkerInfo, WorkerSlot } from '../scheduler.ts';
import { decodeJob, statusResponse, workerSpec } from './codec.ts';
import type { FleetConnection } from './fleet-connection.ts';
import { type HeldLeases, holdLease } from './lease.ts';
import { verifyJob } from './verify-job.ts';

/**
 * Registers a worker with the fleet and returns its slot. `leases` are this process's: its signal stops waits and
 * runs when the scheduler closes.
 */
export async function joinFleet(fleet: FleetConnection, leases: HeldLeases, worker: WorkerInfo): Promise<WorkerSlot> {
  const id = `${worker.name}#${randomUUID().slice(0, 8)}`;
  const spec = workerSpec(worker.platform);
  const { heartbeatMs, wakeTimeoutMs, leaseMs, retainMs } = fleet.config;
  // The report rides on the heartbeat, so frontends list the fleet's workers from Redis alone (fleet-status.ts).
  const beat = () =>
    fleet.script(
      'heartbeat',
      id,
      spec.spec,
      spec.key,
      worker.report === undefined ? '' : JSON.stringify(worker.report()),
    );
  await beat();
  const heartbeat = setInterval(() => void beat().catch(() => {}), heartbeatMs / 3);
  heartbeat.unref();
  let blocking: Redis | null = null;

  /** Waits for a wake marker (or wakeTimeoutMs), however the caller's signal or the scheduler's close ends it. */
  async function waitForWork(signal: AbortSignal): Promise<void> {
    blocking ??= fleet.connect('blocking', { maxRetriesPerRequest: null });
    const connection = blocking;
    const stop = () => {
      // A blocked BLPOP cannot be withdrawn; dropping its connection ends it (the next wait opens another).
      if (blocking === connection) blocking = null;
      connection.disconnect();
    };
    const signals = AbortSignal.any([signal, leases.signal]);
    if (signals.aborted) throw signals.reason;
    signals.addEventListener('abort', stop, { once: true });
    try {
      await connection.blpop(fleet.key('wake', spec.key), Math.max(1, Math.round(wakeTimeoutMs / 1000)));
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
      if (leases.signal.aborted) {
        // A closing scheduler hands out nothing more; the worker's own stop ends this wait.
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
      const token = randomUUID();
      let claimed: [string, string, number] | null = null;
      try {
        claimed = await fleet.script<[string, string, number] | null>('claim', spec.spec, id, token, leaseMs);
      } catch (err) {
        // Redis is away: wait for it rather than spin (the blocking connection's own retries pace this).
        fleet.log.warn('could not ask the queue for work', { worker: id, error: (err as Error).message });
      }
      if (claimed !== null && claimed[1] !== '') {
        const job = await verified(claimed[0], claimed[1], token);
        if (job !== null) return holdLease({ fleet, leases, workerId: id, job, token });
        continue;
      }
      if (claimed === null)
        await waitForWork(signal).catch((err) => {
          if (signal.aborted || leases.signal.aborted) return;
          fleet.log.warn('waiting for work failed', { worker: id, error: (err as Error).message });
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
      fleet.log.warn(
        'refused a queued job that does not match its action digest: was it written to Redis by something other than a larder frontend?',
        { worker: id, operation: name, error: errorForLog(err) },
      );
      const response = statusResponse(code, `larder refused to run this job: ${details}`);
      await fleet.script('complete', name, token, response, retainMs).catch((e: Error) =>
        // The lease expires, and the job goes to another worker, which refuses it too.
        fleet.log.warn('could not record a refused job', { operation: name, error: e.message }),
      );
      return null;
    }
  }

  return {
    take,
    async leave() {
      clearInterval(heartbeat);
      blocking?.disconnect();
      await fleet.redis.hdel(fleet.key('workers'), id).catch(() => {});
    },
  };
}
