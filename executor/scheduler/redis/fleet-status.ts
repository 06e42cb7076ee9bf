/**
 * What a frontend shows of the whole fleet: the live workers with the reports they publish in their heartbeats,
 * and the figures of every platform queue (what to scale each pool of workers by). Read-only: nothing here
 * changes what the scheduler does.
 */
import { describeActionPlatform, describeWorkerPlatform, type RunnerKind } from '../../reapi/platform.ts';
import type { QueueFigures, WorkerReport, WorkerStatus } from '../scheduler.ts';
import { decodeWorkerSpec } from './codec.ts';
import type { FleetConnection } from './fleet-connection.ts';

const NO_REPORT: WorkerReport = { running: 0, slots: 0, done: 0, failed: 0 };

/** The workers that heartbeat within heartbeatMs (by Redis's clock), one entry per joined worker. */
export async function fleetWorkers(fleet: FleetConnection): Promise<WorkerStatus[]> {
  const [[seconds, micros], entries] = await Promise.all([
    fleet.redis.time(),
    fleet.redis.hgetall(fleet.key('workers')),
  ]);
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  const out: WorkerStatus[] = [];
  for (const [id, text] of Object.entries(entries)) {
    const entry = parseEntry(text);
    if (entry === null || entry.t > now || now - entry.t >= fleet.config.heartbeatMs) continue;
    out.push({
      // The id is NAME#RANDOM (worker-slot.ts); people know the worker by its name.
      name: id.replace(/#[^#]*$/, ''),
      platform: describeWorkerPlatform(decodeWorkerSpec(entry.s)),
      ...reportOf(entry.r),
      lastSeen: new Date(entry.t),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Every platform queue Redis knows (empty ones with 0), with the oldest queued action's wait. */
export async function queueFigures(fleet: FleetConnection): Promise<QueueFigures[]> {
  const flat = await fleet.script<Array<string | number>>('queueFigures');
  const out: QueueFigures[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    const spec = JSON.parse(String(flat[i])) as { c: Record<string, string[]>; r: RunnerKind };
    const waitedMs = Number(flat[i + 2]);
    out.push({
      platform: describeActionPlatform({ constraints: new Map(Object.entries(spec.c)), runner: spec.r }),
      queued: Number(flat[i + 1]),
      oldestQueuedSeconds: waitedMs < 0 ? 0 : waitedMs / 1000,
    });
  }
  return out;
}

function parseEntry(text: string): { s: string; t: number; r?: string } | null {
  try {
    const entry = JSON.parse(text) as { s?: unknown; t?: unknown; r?: unknown };
    if (typeof entry.s !== 'string' || typeof entry.t !== 'number') return null;
    return { s: entry.s, t: entry.t, r: typeof entry.r === 'string' ? entry.r : undefined };
  } catch {
    return null;
  }
}

/** A report as a worker wrote it; anything else (an older worker, a hand-written entry) counts as none. */
function reportOf(text: string | undefined): WorkerReport {
  if (text === undefined) return NO_REPORT;
  try {
    const r = JSON.parse(text) as Partial<Record<keyof WorkerReport, unknown>>;
    const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
    return { running: n(r.running), slots: n(r.slots), done: n(r.done), failed: n(r.failed) };
  } catch {
    return NO_REPORT;
  }
}
