/**
 * Persistent worker slots, pooled by key. A slot is a stable directory (where each of its actions is staged, and
 * where its worker process keeps running between actions) plus, once started, the process. Actions with the same
 * key take an idle slot of that key, or a new one while the key has fewer than `maxPerKey` and the pool fewer than
 * `maxTotal` (an idle slot of another key is retired to make room); otherwise they wait for one to come back.
 * Slots idle for `idleMs` are retired, and so is a worker after `maxRequests` actions (tools that leak memory).
 *
 * The key is computed by the server from everything that shapes the process (poolKey): a client's
 * persistentWorkerKey alone is not trusted to tell two versions of a tool apart.
 */
import { createHash } from 'node:crypto';
import { chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../shared/log.ts';
import type { Identities, Identity } from '../../runner/sandbox/identities.ts';
import type { WorkerProcess } from './worker-process.ts';

export interface PoolKeyParts {
  persistentWorkerKey: string;
  siloKey: string;
  containerImage: string;
  protocol: string;
  startup: readonly string[];
  env: ReadonlyArray<readonly [string, string]>;
  /** `hash/size` of every tool input (marked bazel_tool_input, or named on the start-up command line). */
  toolInputs: readonly string[];
}

export function poolKey(parts: PoolKeyParts): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        parts.persistentWorkerKey,
        parts.siloKey,
        parts.containerImage,
        parts.protocol,
        parts.startup,
        parts.env,
        [...parts.toolInputs].sort(),
      ]),
    )
    .digest('hex');
}

export interface PersistentWorkerSlot {
  readonly key: string;
  /** The client's persistentWorkerKey and silo: what the scheduler's affinity hint can see of a job. */
  readonly hint: string;
  readonly id: number;
  /** The exec root of every action this slot runs, and its worker's working directory. */
  readonly dir: string;
  /** The uid the slot's worker process runs as and owns `dir`, for the slot's whole life (null: the server's). */
  readonly identity: Identity | null;
  process: WorkerProcess | null;
  idleSince: number;
}

export interface PoolOptions {
  dir: string;
  /** Each slot's worker process gets a uid of its own, so no action of another slot can reach it. */
  identities: Identities;
  maxPerKey: number;
  maxTotal: number;
  idleMs: number;
  maxRequests: number;
  log: Logger;
}

export interface PoolStats {
  /** Worker processes started so far. */
  started: number;
  /** Slots alive now. */
  live: number;
}

export class PersistentWorkerPool {
  private readonly slots = new Set<PersistentWorkerSlot>();
  private readonly idle = new Set<PersistentWorkerSlot>();
  private readonly waiters: Array<{ key: string; wake: () => void }> = [];
  private nextId = 1;
  private started = 0;
  private readonly reaper: NodeJS.Timeout;

  constructor(private readonly options: PoolOptions) {
    this.reaper = setInterval(() => void this.reapIdle(), Math.max(1000, Math.min(options.idleMs, 60_000)));
    this.reaper.unref();
  }

  /** A slot for `key`, waiting while the pool is full; the caller must `release` it. */
  async acquire(key: string, hint: string, signal: AbortSignal): Promise<PersistentWorkerSlot> {
    for (;;) {
      signal.throwIfAborted();
      const warm = [...this.idle].find((slot) => slot.key === key);
      if (warm !== undefined) {
        this.idle.delete(warm);
        return warm;
      }
      const ofKey = [...this.slots].filter((slot) => slot.key === key).length;
      if (ofKey < this.options.maxPerKey) {
        if (this.slots.size >= this.options.maxTotal) {
          const victim = [...this.idle].sort((a, b) => a.idleSince - b.idleSince)[0];
          if (victim !== undefined) await this.retire(victim);
        }
        if (this.slots.size < this.options.maxTotal) return this.create(key, hint);
      }
      // Woken by any release (or by its cancel), it looks again; its listener goes with each wake, so a
      // long wait through many releases does not pile listeners on the action's signal.
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.waiters.push({ key, wake });
        signal.addEventListener('abort', wake, { once: true });
      });
    }
  }

  /** Marks that a worker process was started in `slot` (for the server's record). */
  recordStart(slot: PersistentWorkerSlot, process: WorkerProcess): void {
    slot.process = process;
    this.started++;
  }

  /** Gives a slot back: kept warm when its worker is healthy, retired otherwise. */
  async release(slot: PersistentWorkerSlot): Promise<void> {
    const healthy = slot.process === null || (slot.process.usable && slot.process.requests < this.options.maxRequests);
    if (healthy) {
      slot.idleSince = Date.now();
      this.idle.add(slot);
    } else {
      await this.retire(slot);
    }
    this.wakeAll();
  }

  stats(): PoolStats {
    return { started: this.started, live: this.slots.size };
  }

  /** Whether a warm (idle, started) worker waits for actions with this hint: the scheduler prefers such a worker. */
  hasWarm(hint: string): boolean {
    return [...this.idle].some((slot) => slot.hint === hint && slot.process !== null);
  }

  async close(): Promise<void> {
    clearInterval(this.reaper);
    await Promise.all([...this.slots].map((slot) => this.retire(slot)));
    this.wakeAll();
  }

  private async create(key: string, hint: string): Promise<PersistentWorkerSlot> {
    const id = this.nextId++;
    const dir = join(this.options.dir, String(id));
    const identity = this.options.identities.acquire();
    const slot: PersistentWorkerSlot = { key, hint, id, dir, identity, process: null, idleSince: Date.now() };
    this.slots.add(slot);
    await rm(dir, { recursive: true, force: true });
    // The slots' folder lets each slot's uid through to its own folder (0711) but not list the others.
    await mkdir(this.options.dir, { recursive: true, mode: 0o711 });
    await mkdir(dir, { mode: 0o700 });
    if (identity !== null) await chown(dir, identity.uid, identity.gid);
    return slot;
  }

  private async retire(slot: PersistentWorkerSlot): Promise<void> {
    if (!this.slots.delete(slot)) return;
    this.idle.delete(slot);
    await slot.process?.kill();
    await rm(slot.dir, { recursive: true, force: true }).catch((err: Error) =>
      this.options.log.warn('could not remove a worker directory', { dir: slot.dir, error: err.message }),
    );
    this.options.identities.release(slot.identity);
  }

  private async reapIdle(): Promise<void> {
    const cutoff = Date.now() - this.options.idleMs;
    for (const slot of [...this.idle]) if (slot.idleSince < cutoff) await this.retire(slot);
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const waiter of this.waiters.splice(0)) waiter.wake();
  }
}
