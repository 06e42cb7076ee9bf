/**
 * A claimed job's lease: renewed every third of leaseMs from claim to result, so only a worker that stopped (or
 * lost Redis for longer than a lease) loses its job; large input fetches do not outlive it. Its signal aborts when
 * the lease is lost, the operation cancelled, or the scheduler closes (the job then goes back to the queue).
 */
import type { ExecuteResponse } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Code, RpcError } from '../../reapi/grpc-status.ts';
import type { ExecutionJob, Lease } from '../scheduler.ts';
import { encodeResponse } from './codec.ts';
import type { FleetConnection } from './fleet-connection.ts';
import { wakeWorkers } from './live-workers.ts';

/**
 * The leases held in this process, and the signal that makes them hand their jobs back when the scheduler closes.
 * handBack() stops each held lease itself rather than each lease listening on that signal: a process may hold
 * more leases than Node's 10 listeners per target before it warns of a leak (MaxListenersExceededWarning).
 */
export class HeldLeases {
  private readonly closing = new AbortController();
  private readonly held = new Map<Promise<void>, (reason: unknown) => void>();

  /** Aborted by handBack(), with the reason the runs are stopped. */
  get signal(): AbortSignal {
    return this.closing.signal;
  }

  /** Counts one lease as held until the returned function is called; handBack() calls `stop` with its reason. */
  hold(stop: (reason: unknown) => void): () => void {
    if (this.closing.signal.aborted) stop(this.closing.signal.reason);
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    this.held.set(settled, stop);
    return () => {
      this.held.delete(settled);
      settle();
    };
  }

  /** Stops the runs of every lease held here, and waits (at most graceMs) for them to hand their jobs back. */
  async handBack(graceMs: number): Promise<void> {
    this.closing.abort(
      new RpcError(Code.UNAVAILABLE, 'this worker is shutting down; the action goes back to the queue'),
    );
    for (const stop of this.held.values()) stop(this.closing.signal.reason);
    const settled = Promise.all([...this.held.keys()]);
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
  }
}

export function holdLease(options: {
  fleet: FleetConnection;
  leases: HeldLeases;
  workerId: string;
  job: ExecutionJob;
  token: string;
  /**
   * The cancellations of the slot's leases, by operation: its channel (`P ev:slot:ID`, subscribed once for the
   * slot's life) calls the one the cancel script names.
   */
  cancels: Map<string, () => void>;
  /** Called once the result is recorded (or given up on). */
  onComplete?: () => void;
  /**
   * Asked as a result is sent (with Lease.complete's takeFollows): what to send with it for the slot (the claim of
   * its next take, or the slot freed for a take under way; scripts.ts complete), or null.
   */
  withResult?: (takeFollows: boolean) => WithResult | null;
}): Lease {
  const { fleet, leases, workerId, job, token, cancels, onComplete, withResult } = options;
  const name = job.operation;
  const { leaseMs, retainMs } = fleet.config;
  const controller = new AbortController();
  const unhold = leases.hold((reason) => controller.abort(reason));
  const cancelled = () => controller.abort(new RpcError(Code.CANCELLED, 'the operation was cancelled'));
  // Cancellation reaches the holder at once by pub/sub on its slot's channel, and at its next renewal should
  // that message be lost.
  cancels.set(name, cancelled);

  const renew = async () => {
    try {
      const answer = await fleet.script<number>('renew', name, token, leaseMs);
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
      fleet.log.warn('could not renew a lease', { worker: workerId, operation: name, error: (err as Error).message });
    }
  };
  const renewal = setInterval(() => void renew(), leaseMs / 3);

  const release = () => {
    clearInterval(renewal);
    if (cancels.get(name) === cancelled) cancels.delete(name);
    unhold();
  };

  return {
    job,
    signal: controller.signal,
    // Stage EXECUTING was set when the job was leased (claim or submit): nothing more to tell.
    async executing() {},
    async complete(response: ExecuteResponse, { takeFollows = false } = {}) {
      const handing = leases.signal.aborted && controller.signal.reason === leases.signal.reason;
      const next = handing ? null : (withResult?.(takeFollows) ?? null);
      try {
        if (handing) {
          const queue = await retried(() => fleet.script<string | null>('release', name, token));
          if (queue) await wakeWorkers(fleet, [queue]);
          return;
        }
        const [recorded, ...claimed] = await retried(() =>
          fleet.script<[number, ...(Claimed | [])]>(
            'complete',
            name,
            token,
            encodeResponse(response),
            retainMs,
            ...(next?.args ?? []),
          ),
        );
        next?.claimed?.(claimed.length === 0 ? null : (claimed as Claimed));
        if (recorded === 0)
          fleet.log.info('result not recorded: the lease was lost and the action went to another worker', {
            worker: workerId,
            operation: name,
          });
      } catch (err) {
        // The lease will expire and the action run again elsewhere: at least once, never lost.
        fleet.log.error('could not record a result; the action will run again', {
          worker: workerId,
          operation: name,
          error: (err as Error).message,
        });
      } finally {
        // Unless told above: nothing is known of the claim (it failed with the result); the take claims itself.
        next?.claimed?.('unknown');
        release();
        onComplete?.();
      }
    },
  };
}

/** A job a claim leased to a slot: its operation, the job as queued (JSON; '' when it expired), attempts, token. */
export type Claimed = [name: string, job: string, attempts: number, token: string];

/**
 * What is sent with a result for the slot (holdLease's withResult): its ARGV after the complete script's own, and,
 * for a claim, who is told what it found: a job, null (nothing: the slot is registered as waiting), or 'unknown'
 * (it failed). Only the first call of `claimed` counts.
 */
export interface WithResult {
  args: (string | number)[];
  claimed?(outcome: Claimed | null | 'unknown'): void;
}

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
