/**
 * The workers the fleet's Redis counts as live (heartbeat within heartbeatMs, by Redis's clock), and waking those
 * that could take a job queued again: what the sweep and a worker handing jobs back need (submit does the same
 * inside its script).
 */
import { type ActionPlatform, unmatchedProperties, type WorkerPlatform } from '../../reapi/platform.ts';
import { decodeWorkerSpec } from './codec.ts';
import type { FleetConnection } from './fleet-connection.ts';

export interface LiveWorker {
  platform: WorkerPlatform;
  /** The key of the wake list it blocks on (one per distinct platform). */
  wake: string;
}

/** Every live worker's platform and wake list. */
export async function liveWorkers(fleet: FleetConnection): Promise<LiveWorker[]> {
  const flat = await fleet.script<string[]>('liveWorkers', fleet.config.heartbeatMs);
  const out: LiveWorker[] = [];
  for (let i = 0; i < flat.length; i += 2) out.push({ platform: decodeWorkerSpec(flat[i]!), wake: flat[i + 1]! });
  return out;
}

/** The wake lists of the workers that could run an action of `platform`, once each. */
export function wakesFor(platform: ActionPlatform, workers: readonly LiveWorker[]): Set<string> {
  return new Set(workers.filter((w) => unmatchedProperties(platform, w.platform).length === 0).map((w) => w.wake));
}

/** Pushes a wake marker for each requeued job to every live worker platform that could take it. */
export async function wakeWorkers(fleet: FleetConnection, queueKeys: readonly string[]): Promise<void> {
  const workers = await liveWorkers(fleet);
  for (const queueKey of queueKeys) {
    const spec = await fleet.redis.hget(fleet.key('queues'), queueKey);
    if (spec === null) continue;
    for (const wake of wakesFor(platformOfQueue(spec), workers)) await fleet.redis.rpush(fleet.key('wake', wake), '1');
  }
}

function platformOfQueue(spec: string): ActionPlatform {
  const parsed = JSON.parse(spec) as { c: Record<string, string[]>; r: ActionPlatform['runner'] };
  return { constraints: new Map(Object.entries(parsed.c)), options: new Map(), runner: parsed.r };
}
