/**
 * A worker's side of the Redis scheduler: registration with heartbeats, blocking takes, affinity, and the claimed
 * job's lease (lease.ts).
 *
 * Each joined slot has its own identity (`NAME#RANDOM`), so a restarted worker on the same host and port is
 * never taken for the old one, and its own blocking connection (BLPOP holds a connection while it waits).
 *
 * A slot that finds nothing to claim is registered as waiting (in the same script), and submit hands the next
 * job it could run straight to it: leased, and pushed to the slot's own list, which its BLPOP watches before the
 * platform's wake list. So an idle fleet runs a new job after one script on the frontend and one blocking read
 * on the worker, without a claim in between.
 * The registration says how many jobs the slot takes (its worker's free slots): submit keeps it registered for
 * the rest when it hands it one, and its next take waits at once, again without a claim.
 *
 * A result whose worker takes its next job right after (Lease.complete's takeFollows: the result frees the slot it
 * was waiting for), sent while no take is under way, carries the slot's next claim (the complete script claims as
 * well), so the take finds the job (or the slot registered as waiting) already claimed: one round trip from one
 * job to the next. A job so claimed and never taken (the worker left) goes back to the queue, not counted as an
 * attempt.
 *
 * Affinity: WorkerInfo.warmFor is a question about a job, which Redis cannot ask. A worker is warm only for keys
 * of jobs it has run, so the slot keeps the last job of each affinity key it took and, at every claim, asks
 * warmFor about those: the keys that answer yes go to the claim script, which prefers their jobs and, when
 * nothing is queued, registers the slot as waiting warm for them, so that submit hands a job of such a key to
 * this slot before any other waiting one (scripts.ts, submit).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { errorForLog } from '../../../shared/errors.ts';
import { callStatus } from '../../reapi/grpc-status.ts';
import type { ExecutionJob, Lease, WorkerInfo, WorkerSlot } from '../scheduler.ts';
import { affinityKey, decodeJob, statusResponse, workerSpec } from './codec.ts';
import type { FleetConnection } from './fleet-connection.ts';
import { type Claimed, type HeldLeases, holdLease, type WithResult } from './lease.ts';
import { wakeWorkers } from './live-workers.ts';
import { verifyJob } from './verify-job.ts';

/** A job leased to a slot: its operation, the job as queued (JSON; '' when it expired meanwhile), attempts, token. */
type Handed = Claimed;

/** The pause after a wait for work failed, before the slot asks the queue again. */
const WAIT_RETRY_MS = 500;

/** How many affinity keys a slot remembers a job of (the most recent): bounds what each claim asks warmFor. */
const REMEMBERED_KEYS = 64;

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
  // Cancellations of this slot's leases come on a channel of its own, subscribed once: no SUBSCRIBE per job.
  const cancels = new Map<string, () => void>();
  const stopCancels = await fleet.events.listen(`slot:${id}`, (name) => cancels.get(name)?.());
  await beat().catch((err: unknown) => {
    stopCancels();
    throw err;
  });
  const heartbeat = setInterval(() => void beat().catch(() => {}), heartbeatMs / 3);
  heartbeat.unref();
  let blocking: Redis | null = null;
  /** Whether a take is blocked waiting for a wake marker. */
  let waiting = false;
  /** The last job taken of each affinity key (most recent last), to ask worker.warmFor about. */
  const ran = new Map<string, ExecutionJob>();
  const ownWake = fleet.key('wake', 'slot', id);
  /** Whether a take is under way (then a result carries no claim: that take claims). */
  let taking = false;
  let leaving = false;
  /**
   * The claim the last result carried, for the next take: a job, null (nothing; the slot is registered as waiting,
   * so the take waits at once), or 'unknown' (the take claims itself). At most one at a time.
   */
  let prefetched: Promise<Handed | null | 'unknown'> | null = null;
  /** The warm keys the slot was registered with by that claim, should it have found nothing. */
  let prefetchedKeys: string[] = [];
  /**
   * Whether the slot is registered as waiting, for its next take: its last claim found nothing, or submit handed it
   * a job and kept it registered for its worker's other free slots. That take then waits at once, without a claim.
   */
  let registered = false;

  /**
   * A claim's ARGV: the token is the lease's if a job is claimed, and the one submit leases with if the slot is
   * registered; the capacity is how many jobs its worker would take now (its free slots, this take's included).
   */
  const claimArgs = (keys = warmKeys(), capacity = freeSlots()): (string | number)[] => [
    spec.spec,
    id,
    randomUUID(),
    leaseMs,
    spec.key,
    capacity,
    ...keys,
  ];

  /** The worker's free slots as its report says (a take is for one of them), 1 without a report. */
  const freeSlots = (): number => {
    const report = worker.report?.();
    return report === undefined ? 1 : Math.max(1, report.slots - report.running);
  };

  /**
   * holdLease's withResult: with a take under way, the slot this result frees is one more job the slot's registration
   * as waiting may be handed; else, when the take follows, its claim (unless one is pending already).
   */
  const withResult = (takeFollows: boolean): WithResult | null => {
    if (leaving || leases.signal.aborted) return null;
    if (taking) return { args: ['', id] };
    if (!takeFollows || prefetched !== null) return null;
    let settle!: (outcome: Handed | null | 'unknown') => void;
    prefetched = new Promise((resolve) => (settle = resolve));
    prefetchedKeys = warmKeys();
    // For the one slot this result frees.
    return { args: claimArgs(prefetchedKeys, 1), claimed: (outcome) => settle(outcome) };
  };

  /** The affinity keys this slot is warm for now. */
  const warmKeys = (): string[] =>
    worker.warmFor === undefined ? [] : [...ran].filter(([, job]) => worker.warmFor!(job)).map(([key]) => key);

  const remember = (job: ExecutionJob) => {
    const key = affinityKey(job.platform);
    if (key === '' || worker.warmFor === undefined) return;
    ran.delete(key);
    ran.set(key, job);
    if (ran.size > REMEMBERED_KEYS) ran.delete(ran.keys().next().value!);
  };

  /**
   * A job of an affinity key finished here: the slot may be warm for that key now, while its take (if one is
   * blocked) registered as cold. Waking it makes it claim again, and register with what it is warm for now.
   */
  const finished = (job: ExecutionJob) => {
    if (waiting && affinityKey(job.platform) !== '') void fleet.redis.rpush(ownWake, '1').catch(() => {});
  };

  /**
   * Waits for what is pushed to this slot or its platform (or wakeTimeoutMs), however the caller's signal or the
   * scheduler's close ends it: a job handed to this slot by submit (returned), or a marker to look again (null).
   * Sets `registered`: whether submit kept the slot registered as waiting when it handed the job.
   */
  async function waitForWork(signal: AbortSignal): Promise<Handed | null> {
    blocking ??= fleet.connect('blocking', { maxRetriesPerRequest: null });
    const connection = blocking;
    const stop = () => {
      // A blocked BLPOP cannot be withdrawn; dropping its connection ends it (the next wait opens another).
      if (blocking === connection) blocking = null;
      fleet.disconnect(connection);
    };
    const signals = AbortSignal.any([signal, leases.signal]);
    if (signals.aborted) throw signals.reason;
    signals.addEventListener('abort', stop, { once: true });
    waiting = true;
    registered = false;
    try {
      // Its own list first: a job handed to this slot.
      const popped = await connection.blpop(
        ownWake,
        fleet.key('wake', spec.key),
        Math.max(1, Math.round(wakeTimeoutMs / 1000)),
      );
      if (popped === null || popped[0] !== ownWake || popped[1] === '1') return null;
      const handed = JSON.parse(popped[1]) as { n: string; j: string; a: number; t: string; r?: number };
      registered = handed.r === 1;
      return [handed.n, handed.j, handed.a, handed.t];
    } catch (err) {
      if (signals.aborted) throw signals.reason;
      throw err;
    } finally {
      waiting = false;
      signals.removeEventListener('abort', stop);
    }
  }

  async function take(signal: AbortSignal): Promise<Lease> {
    taking = true;
    try {
      return await takeNext(signal);
    } finally {
      taking = false;
    }
  }

  async function takeNext(signal: AbortSignal): Promise<Lease> {
    // What the last result's claim found, if it carried one.
    let known: Handed | null = null;
    if (prefetched !== null) {
      const outcome = await prefetched;
      prefetched = null;
      // Registered as waiting only if that claim found nothing (and the slot is not warm for other keys by now:
      // then registered again by a claim of its own); a claim that failed may have changed anything.
      if (outcome !== 'unknown') known = outcome;
      registered = outcome === null && warmKeys().join('\n') === prefetchedKeys.join('\n');
    }
    for (;;) {
      if (signal.aborted) throw signal.reason;
      if (leases.signal.aborted) {
        // A closing scheduler hands out nothing more; the worker's own stop ends this wait.
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
      let handed: Handed | null = known;
      known = null;
      if (handed === null && !registered) {
        try {
          handed = await fleet.script<Handed | null>('claim', ...claimArgs());
        } catch (err) {
          // Redis is away: wait for it rather than spin (the blocking connection's own retries pace this).
          fleet.log.warn('could not ask the queue for work', { worker: id, error: (err as Error).message });
        }
      }
      handed ??= await waitForWork(signal).catch(async (err) => {
        if (signal.aborted || leases.signal.aborted) return null;
        fleet.log.warn('waiting for work failed', { worker: id, error: (err as Error).message });
        // A connection that fails at once (ended, until fleet-connection.ts opens it again) fails every command
        // without touching the event loop: without this pause the loop would spin and starve the process.
        await pause(WAIT_RETRY_MS, AbortSignal.any([signal, leases.signal]));
        return null;
      });
      if (handed === null || handed[1] === '') continue;
      const [name, text, , token] = handed;
      const job = await verified(name, text, token);
      if (job !== null) {
        remember(job);
        return holdLease({
          fleet,
          leases,
          workerId: id,
          job,
          token,
          cancels,
          onComplete: () => finished(job),
          withResult,
        });
      }
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
      leaving = true;
      clearInterval(heartbeat);
      stopCancels();
      if (blocking !== null) fleet.disconnect(blocking);
      // A job the last result claimed for a take that never came goes back to the queue, not counted.
      const claimed = prefetched === null ? null : await prefetched;
      prefetched = null;
      if (Array.isArray(claimed)) {
        const queue = await fleet.script<string | null>('release', claimed[0], claimed[3]).catch(() => null);
        if (queue) await wakeWorkers(fleet, [queue]).catch(() => {});
      }
      // Jobs handed to this slot that it never read go back to the queue, for the workers that could take them.
      const requeued = await fleet.script<string[]>('leave', id).catch(() => []);
      if (requeued.length > 0) await wakeWorkers(fleet, requeued).catch(() => {});
    },
  };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
