/**
 * Warm containers for `dockerReuse=True`, keyed by everything that shapes one: image, `cache-silo-key`, network,
 * user, limits and extra mounts. Different keys never share a container, so two silos never do.
 *
 * A warm container runs `sleep infinity` under an init (which reaps what exec'd commands orphan), with a read-only
 * root file system; its writable places are a host folder mounted at /tmp and the engine's /dev/shm, both emptied
 * from the host between actions (no exec, no tools needed in the image), and its IPC namespace, cleared from the
 * host too (ipc.ts; without root, which that needs, a container serves one action and is removed). The init runs
 * as a user no action has (container.ts), so no action can trace, signal or replace it. Each action's fresh exec
 * root is visible because the whole actions folder is mounted once, at the same path: new directories under it
 * appear in the container without a new mount. Other actions' directories are not listable there (the folder is
 * made 0711 and their names are random UUIDs), and the container's user cannot write outside its own action's
 * directory.
 *
 * Bounds: at most `maxContainers` containers at once, busy or idle; a new key evicts the least recently used idle
 * container (stopped and removed, awaited); with all of them busy, or one of the key being cleaned after its
 * last action, acquire waits. An idle container is removed after `idleMs`. release(false) removes a container:
 * after a timeout, OOM kill, non-zero exit or leftovers.
 */
import { chmod, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../shared/log.ts';
import { containerProcesses } from './cgroup.ts';
import { createContainer, type DockerLimits, inspectContainer, removeContainer } from './container.ts';
import type { DockerEngine } from './engine.ts';
import { canClearSysvIpc, clearSysvIpc } from './ipc.ts';
import type { DockerSpec } from './spec.ts';

export interface WarmContainer {
  readonly id: string;
  readonly key: string;
  readonly spec: DockerSpec;
  /** Host PID of the container's init. */
  readonly pid: number;
  /** Host PIDs of the init and its `sleep`: anything else after an action is a leftover. */
  readonly baseline: ReadonlySet<number>;
  /** Host folder mounted at /tmp. */
  readonly tmpDir: string;
  /** Names in /tmp that lead to other mounts (an actions folder under /tmp): never emptied. */
  readonly keepInTmp: ReadonlySet<string>;
  idleSince: number;
  idleTimer: NodeJS.Timeout | null;
}

export interface WarmPoolOptions {
  engine: DockerEngine;
  limits: DockerLimits;
  /** Mounted into every warm container at the same path (where exec roots are made). */
  actionsDir: string;
  /** Where the containers' /tmp folders are made. */
  tmpRoot: string;
  maxContainers: number;
  idleMs: number;
  /** The owner id containers are labelled with (container.ts). */
  owner: string;
  log: Logger;
}

/** How long a fresh container's init may take to start its `sleep`. */
const START_LIMIT_MS = 5_000;

export class WarmPool {
  private readonly idle = new Map<string, WarmContainer[]>();
  private live = 0;
  private serial = 0;
  private closed = false;
  private readonly waiters: Array<() => void> = [];
  /** Per key, containers being cleaned on their way back: an action of the key waits for one of them. */
  private readonly returning = new Map<string, number>();
  /** Removals and cleanings in flight, awaited by close(). */
  private readonly chores = new Set<Promise<void>>();
  /** Whether containers can be cleared for reuse (ipc.ts); checked once. */
  private readonly reusable = canClearSysvIpc();

  constructor(private readonly options: WarmPoolOptions) {}

  /** Counts for tests and logs. */
  stats(): { live: number; idle: number } {
    let idle = 0;
    for (const list of this.idle.values()) idle += list.length;
    return { live: this.live, idle };
  }

  async acquire(spec: DockerSpec, mounts: readonly string[], signal?: AbortSignal): Promise<WarmContainer> {
    const key = JSON.stringify([
      spec.image,
      spec.silo,
      spec.network,
      spec.user,
      this.options.limits,
      [...mounts].sort(),
    ]);
    for (;;) {
      if (this.closed) throw new Error('the docker runner is closing');
      signal?.throwIfAborted();
      const warm = this.idle.get(key)?.pop();
      if (warm !== undefined) {
        if (warm.idleTimer !== null) clearTimeout(warm.idleTimer);
        return warm;
      }
      if ((this.returning.get(key) ?? 0) > 0) {
        await new Promise<void>((resolve) => this.waiters.push(resolve));
        continue;
      }
      if (this.live >= this.options.maxContainers) this.evictOldestIdle();
      if (this.live < this.options.maxContainers) {
        this.live++;
        try {
          return await this.start(key, spec, mounts);
        } catch (err) {
          this.live--;
          this.wake();
          throw err;
        }
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /**
   * Back to the pool, or removed (awaited, so nothing of it is left running when this resolves). A reusable one is
   * cleaned in the background (file removals and one `ipcrm` from the host, about 10 ms, mostly starting the
   * process): the action's result need not wait for that, and the next action of the key waits for it to be idle
   * rather than starting another container.
   */
  async release(container: WarmContainer, reusable: boolean): Promise<void> {
    if (!reusable || !this.reusable || this.closed) return this.destroy(container);
    this.returning.set(container.key, (this.returning.get(container.key) ?? 0) + 1);
    this.chore(this.comeBack(container));
  }

  /** Cleans a released container, then parks it (or removes it, should cleaning fail). */
  private async comeBack(container: WarmContainer): Promise<void> {
    const cleaned = await this.clean(container).then(
      () => true,
      (err: Error) => {
        this.options.log.warn('could not clean a warm container; removing it', {
          container: container.id.slice(0, 12),
          error: err.message,
        });
        return false;
      },
    );
    const left = (this.returning.get(container.key) ?? 1) - 1;
    if (left === 0) this.returning.delete(container.key);
    else this.returning.set(container.key, left);
    if (cleaned) this.park(container);
    else await this.destroy(container);
  }

  /** Removes every container, idle ones at once, busy ones as they come back (their runs are being cancelled). */
  async close(): Promise<void> {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list.splice(0)) this.chore(this.destroy(c));
    for (const wake of this.waiters.splice(0)) wake();
    while (this.chores.size > 0) await Promise.all([...this.chores]);
  }

  private async start(key: string, spec: DockerSpec, mounts: readonly string[]): Promise<WarmContainer> {
    const { engine, actionsDir, limits } = this.options;
    const tmpDir = join(this.options.tmpRoot, `${process.pid}-${++this.serial}`);
    await mkdir(tmpDir, { recursive: true });
    await chmod(tmpDir, 0o1777); // any user's /tmp, sticky; mkdir's mode is cut by the umask
    let id: string | undefined;
    try {
      id = await createContainer(engine, {
        spec,
        limits,
        binds: [`${actionsDir}:${actionsDir}`, ...mounts.map((m) => `${m}:${m}`), `${tmpDir}:/tmp`],
        entrypoint: ['sleep'],
        cmd: ['infinity'],
        env: {},
        workingDir: '/',
        warm: true,
        attach: false,
        role: 'warm',
        owner: this.options.owner,
      });
      await engine.call('POST', `/containers/${id}/start`);
      const { pid } = await inspectContainer(engine, id);
      const baseline = await settledBaseline(pid);
      this.options.log.debug('warm container started', {
        container: id.slice(0, 12),
        image: spec.image,
        silo: spec.silo,
      });
      const keepInTmp = new Set(
        [actionsDir, ...mounts].filter((m) => m.startsWith('/tmp/')).map((m) => m.split('/')[2]!),
      );
      return { id, key, spec, pid, baseline, tmpDir, keepInTmp, idleSince: 0, idleTimer: null };
    } catch (err) {
      if (id !== undefined) await removeContainer(engine, id).catch(() => undefined);
      await rm(tmpDir, { recursive: true, force: true });
      throw err;
    }
  }

  private park(container: WarmContainer): void {
    if (this.closed) {
      this.chore(this.destroy(container));
      return;
    }
    container.idleSince = Date.now();
    container.idleTimer = setTimeout(() => {
      const list = this.idle.get(container.key) ?? [];
      const at = list.indexOf(container);
      if (at < 0) return;
      list.splice(at, 1);
      this.chore(this.destroy(container));
    }, this.options.idleMs);
    container.idleTimer.unref();
    this.idle.set(container.key, [...(this.idle.get(container.key) ?? []), container]);
    this.wake();
  }

  private evictOldestIdle(): void {
    let oldest: WarmContainer | undefined;
    for (const list of this.idle.values())
      for (const c of list) if (oldest === undefined || c.idleSince < oldest.idleSince) oldest = c;
    if (oldest === undefined) return;
    const list = this.idle.get(oldest.key)!;
    list.splice(list.indexOf(oldest), 1);
    if (oldest.idleTimer !== null) clearTimeout(oldest.idleTimer);
    // Counted as gone now (its slot is reused at once); the removal itself is awaited by close().
    this.live--;
    const evicted = oldest;
    this.chore(this.remove(evicted));
  }

  /**
   * Empties /tmp, /dev/shm and /dev/mqueue (POSIX message queues) from the host, and removes System V IPC objects
   * (ipc.ts). The engine makes the mount points of folders mounted under /tmp (the actions folder, when the work
   * folder is in /tmp) inside our /tmp folder: those stay, or the mounts would go with them. They are root's and
   * read-only to the action, so it cannot leave anything there.
   */
  private async clean(container: WarmContainer): Promise<void> {
    await Promise.all([
      emptyDir(container.tmpDir, container.keepInTmp),
      emptyDir(`/proc/${container.pid}/root/dev/shm`, new Set()),
      emptyDir(`/proc/${container.pid}/root/dev/mqueue`, new Set()),
      clearSysvIpc(container.pid),
    ]);
  }

  private async destroy(container: WarmContainer): Promise<void> {
    if (container.idleTimer !== null) clearTimeout(container.idleTimer);
    try {
      await this.remove(container);
    } finally {
      this.live--;
      this.wake();
    }
  }

  private async remove(container: WarmContainer): Promise<void> {
    await removeContainer(this.options.engine, container.id).catch((err: Error) =>
      this.options.log.warn('could not remove a container', { container: container.id, error: err.message }),
    );
    await rm(container.tmpDir, { recursive: true, force: true });
  }

  private chore(work: Promise<void>): void {
    const tracked = work.catch(() => undefined).finally(() => this.chores.delete(tracked));
    this.chores.add(tracked);
  }

  /** Every waiter looks again: the one whose key came back, or any one, when a slot came free, may go on. */
  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}

/** Processes other than `baseline` (and zombies, which run nothing) in the container; null: cannot tell. */
export async function leftovers(container: WarmContainer): Promise<number[] | null> {
  const procs = await containerProcesses(container.pid);
  if (procs === null) return null;
  const left: number[] = [];
  for (const pid of procs) if (!container.baseline.has(pid) && !(await isZombie(pid))) left.push(pid);
  return left;
}

/** The init and its child once the init has started it (the engine's start returns before that). */
async function settledBaseline(pid: number): Promise<Set<number>> {
  const deadline = Date.now() + START_LIMIT_MS;
  for (;;) {
    const procs = await containerProcesses(pid);
    if (procs === null) throw new Error("cannot read the container's cgroup to check for leftover processes");
    if (procs.size >= 2) return procs;
    if (Date.now() > deadline)
      throw new Error("the warm container's `sleep infinity` did not start (does the image have sleep?)");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function isZombie(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' || stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
}

async function emptyDir(dir: string, keep: ReadonlySet<string>): Promise<void> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  await Promise.all(
    names.filter((name) => !keep.has(name)).map((name) => rm(join(dir, name), { recursive: true, force: true })),
  );
}
