/**
 * A cgroup per action: its memory and process limits, an exact "every process of the action" to kill at the end,
 * and the kernel's own word on whether it was killed for memory. Both layouts are supported:
 *
 * - cgroup v2 (one unified hierarchy, most current hosts): one folder, `memory.max`, `pids.max`, `cgroup.kill`,
 *   OOM kills counted in `memory.events`;
 * - cgroup v1 (this project's CI and Docker hosts in hybrid mode): one folder in each of the `memory`, `pids` and
 *   `freezer` hierarchies, `memory.limit_in_bytes`, `pids.max`, OOM kills in `memory.oom_control`, and killing
 *   through the freezer (frozen processes cannot fork while they are being killed).
 *
 * Action groups live under the server's own cgroup (read from /proc/self/cgroup), so whatever limits the
 * service manager gave larder bound its actions too. Processes enter before their command runs: the spawner puts
 * itself into the group for the instant of fork() (spawner-process.mjs), so there is no window in which a
 * command could fork outside it.
 *
 * A group is reused by the next action once it is empty (`recycle`): making and removing one per action cost
 * a mkdir, the limit writes and an rmdir in each hierarchy every time. Its limits stay as they were set; what
 * is counted per action (OOM kills) is measured from where the last action left it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface CgroupLimits {
  /** Bytes; 0: unlimited. */
  readonly memoryBytes: number;
  /** Tasks at once; 0: unlimited. */
  readonly pids: number;
}

export interface ActionCgroup {
  /**
   * The files a process writes its pid to, to enter the group (one per hierarchy): v1 `tasks`, which moves only
   * the writing thread (the spawner's main thread, which forks), v2 `cgroup.procs`.
   */
  readonly enterFiles: readonly string[];
  /**
   * Kills every process in the group and resolves once none of them can run again (bounded in time): each is
   * gone, a zombie, or already exiting. An exiting task has left its last system call and only the kernel's
   * teardown of it remains (bubblewrap's namespace init unmounting the sandbox, typically a few ms after the
   * command's own exit): it runs no code of the action's and writes nothing more, so nothing waits for it here.
   * `exitSign`, when given, settles once the group's processes have probably begun to exit (the command's output
   * pipes closed, which an exiting process does early): the first pause between rounds ends there.
   */
  killAll(exitSign?: Promise<unknown>): Promise<void>;
  /** Whether the kernel killed a process of the group for exceeding its memory limit since it was made or recycled. */
  oomKilled(): Promise<boolean>;
  /**
   * Readies the group for another action, after killAll: resolves true once no task is left in it, the exiting
   * ones included (OOM kills are counted afresh from here; at once when it is empty already); false when one
   * stays past a bound (a process stuck in the kernel), and then it must be removed.
   */
  recycle(): Promise<boolean>;
  /** Removes the group, after killAll, once no task is left in it (bounded in time). */
  remove(): Promise<void>;
}

export interface Cgroups {
  readonly version: 1 | 2;
  /**
   * Where the spawner goes back: the cgroups this server (and the spawner it forks) lives in, by their
   * `cgroup.procs` files, which move every thread of the process. A thread the spawner's runtime started while its
   * main thread was in an action's group (Bun starts one at its first spawn) is in that group too; left there, it
   * would be killed with the action, and a thread killed takes its whole process with it.
   */
  readonly homeFiles: readonly string[];
  create(name: string, limits: CgroupLimits): Promise<ActionCgroup>;
}

const V1_CONTROLLERS = ['memory', 'pids', 'freezer'] as const;
/** How long killAll and recycle wait for a group: a process in uninterruptible sleep (a stuck NFS read) may linger. */
const EMPTY_LIMIT_MS = 10_000;
/** The task flag `PF_EXITING` (include/linux/sched.h), in /proc/<tid>/stat's ninth field: do_exit has begun. */
const PF_EXITING = 0x4;

/**
 * The cgroups this process may create action groups in, or null with the reason (not root, no writable
 * hierarchy). `prefix` names this server's subtree (several servers may share a host): it is the work folder's
 * owner (worker/work-root.ts), so action groups found under it at start are a crashed run's, and are killed
 * (with every process left in them) and removed here.
 */
export async function openCgroups(prefix: string): Promise<Cgroups | { unavailable: string }> {
  const own = ownCgroups();
  const unified = '/sys/fs/cgroup';
  const v2Controllers = readOrEmpty(join(unified, 'cgroup.controllers'));
  if (v2Controllers.includes('memory') && v2Controllers.includes('pids')) {
    const base = join(unified, own.get('') ?? '/', prefix);
    try {
      await setUpV2(join(unified, own.get('') ?? '/'), base);
      // Set-up may have moved this server into a leaf: its home is where it is now.
      const cgroups = v2(base, join(unified, ownCgroups().get('') ?? '/', 'cgroup.procs'));
      await sweepLeftovers(base, cgroups);
      return cgroups;
    } catch (err) {
      return { unavailable: `cgroup v2 at ${base}: ${(err as Error).message}` };
    }
  }
  const roots = new Map<string, string>();
  for (const controller of V1_CONTROLLERS) {
    const mount = join('/sys/fs/cgroup', controller);
    if (!existsSync(join(mount, 'cgroup.procs')))
      return { unavailable: `no cgroup v1 ${controller} hierarchy at ${mount}` };
    roots.set(controller, join(mount, own.get(controller) ?? '/', prefix));
  }
  try {
    for (const root of roots.values()) await mkdir(root, { recursive: true });
    // Without hierarchical accounting a child's limit would not count toward larder's own.
    await writeFile(join(roots.get('memory')!, 'memory.use_hierarchy'), '1').catch(() => undefined);
  } catch (err) {
    return { unavailable: `cgroup v1: ${(err as Error).message}` };
  }
  const home = V1_CONTROLLERS.map((controller) =>
    join('/sys/fs/cgroup', controller, own.get(controller) ?? '/', 'cgroup.procs'),
  );
  const cgroups = v1(roots, home);
  // A group missing from some hierarchy is fine: killing goes through the freezer's, removal ignores absent ones.
  for (const root of roots.values()) await sweepLeftovers(root, cgroups);
  return cgroups;
}

/** Kills and removes every action group under `root`: a crashed run's (nothing of this run exists yet). */
async function sweepLeftovers(root: string, cgroups: OpenCgroups): Promise<void> {
  const names = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  for (const name of names) {
    const group = cgroups.existing(name);
    await group.killAll();
    await group.remove();
  }
}

/** controller (or '' for v2) → this process's cgroup path in that hierarchy. */
function ownCgroups(): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of readOrEmpty('/proc/self/cgroup').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers === undefined || path === undefined) continue;
    for (const controller of controllers.split(',')) own.set(controller, path);
  }
  return own;
}

/**
 * A cgroup (or /proc) file's text, '' where it cannot be read. Synchronous: these files are made by the kernel
 * from memory as they are read (no disk, no journal, no lock another action's work holds for long), so the read
 * is a few system calls of microseconds. Every action reads three or four of them, and on the thread pool each
 * cost five round trips (open, fstat, read, read, close), more than the reads themselves.
 */
function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The cgroups, and a handle on a group that already exists (for the start-up sweep). */
type OpenCgroups = Cgroups & { existing(name: string): ActionCgroup };

function v1(roots: Map<string, string>, homeFiles: string[]): OpenCgroups {
  const dirsOf = (name: string) => new Map([...roots].map(([controller, root]) => [controller, join(root, name)]));
  const cgroups: OpenCgroups = {
    version: 1,
    homeFiles,
    async create(name, limits) {
      const dirs = dirsOf(name);
      for (const dir of dirs.values()) await mkdir(dir);
      const memory = dirs.get('memory')!;
      if (limits.memoryBytes > 0) {
        await writeFile(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // Swap counts too where the kernel accounts it, so a limit cannot be dodged by swapping.
        await writeFile(join(memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => undefined);
      }
      if (limits.pids > 0) await writeFile(join(dirs.get('pids')!, 'pids.max'), String(limits.pids));
      return cgroups.existing(name);
    },
    existing(name) {
      const dirs = dirsOf(name);
      const memory = dirs.get('memory')!;
      const freezer = dirs.get('freezer')!;
      const oomKills = () => oomKillCount(join(memory, 'memory.oom_control'));
      let oomBefore = 0;
      return {
        enterFiles: [...dirs.values()].map((dir) => join(dir, 'tasks')),
        async killAll(exitSign) {
          // `tasks` lists threads: a process whose leader exited while its other threads run on is still live.
          await killUntilNoneCanRun(join(freezer, 'tasks'), exitSign, async (pids) => {
            await writeFile(join(freezer, 'freezer.state'), 'FROZEN').catch(() => undefined);
            for (const pid of pids) signal(pid);
            await writeFile(join(freezer, 'freezer.state'), 'THAWED').catch(() => undefined);
          });
        },
        async oomKilled() {
          return oomKills() > oomBefore;
        },
        async recycle() {
          if (!(await emptied(join(freezer, 'cgroup.procs')))) return false;
          oomBefore = oomKills();
          return true;
        },
        async remove() {
          await emptied(join(freezer, 'cgroup.procs'));
          for (const dir of dirs.values()) await rmdir(dir).catch(() => undefined);
        },
      };
    },
  };
  return cgroups;
}

async function setUpV2(own: string, base: string): Promise<void> {
  await mkdir(base, { recursive: true });
  try {
    await appendFile(join(own, 'cgroup.subtree_control'), '+memory +pids');
  } catch (err) {
    // "No internal processes": a cgroup with processes cannot hand controllers down. Move this server's
    // processes into a leaf of their own (what a service with Delegate=yes is expected to do), then retry.
    if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
    const leaf = join(own, 'larder-server');
    await mkdir(leaf, { recursive: true });
    for (const pid of readOrEmpty(join(own, 'cgroup.procs')).split('\n').filter(Boolean))
      await writeFile(join(leaf, 'cgroup.procs'), pid).catch(() => undefined);
    await appendFile(join(own, 'cgroup.subtree_control'), '+memory +pids');
  }
  await appendFile(join(base, 'cgroup.subtree_control'), '+memory +pids');
}

function v2(base: string, home: string): OpenCgroups {
  const cgroups: OpenCgroups = {
    version: 2,
    homeFiles: [home],
    async create(name, limits) {
      const dir = join(base, name);
      await mkdir(dir);
      if (limits.memoryBytes > 0) {
        await writeFile(join(dir, 'memory.max'), String(limits.memoryBytes));
        await writeFile(join(dir, 'memory.swap.max'), '0').catch(() => undefined);
      }
      if (limits.pids > 0) await writeFile(join(dir, 'pids.max'), String(limits.pids));
      return cgroups.existing(name);
    },
    existing(name) {
      const dir = join(base, name);
      const oomKills = () => oomKillCount(join(dir, 'memory.events'));
      let oomBefore = 0;
      return {
        enterFiles: [join(dir, 'cgroup.procs')],
        async killAll(exitSign) {
          await killUntilNoneCanRun(join(dir, 'cgroup.threads'), exitSign, async (pids) => {
            const killed = await writeFile(join(dir, 'cgroup.kill'), '1').then(
              () => true,
              () => false, // kernels before 5.14 have no cgroup.kill
            );
            if (!killed) for (const pid of pids) signal(pid);
          });
        },
        async oomKilled() {
          return oomKills() > oomBefore;
        },
        async recycle() {
          if (!(await emptied(join(dir, 'cgroup.procs')))) return false;
          oomBefore = oomKills();
          return true;
        },
        async remove() {
          await emptied(join(dir, 'cgroup.procs'));
          await rmdir(dir).catch(() => undefined);
        },
      };
    },
  };
  return cgroups;
}

/**
 * Kills until no task `threads` lists can run again (taskCanRun). There is no event for "a cgroup's processes
 * died" that works on both layouts, so this asks at a short interval, bounded in time.
 */
async function killUntilNoneCanRun(
  threads: string,
  exitSign: Promise<unknown> | undefined,
  kill: (pids: number[]) => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + EMPTY_LIMIT_MS;
  for (let round = 0; Date.now() < deadline; round++) {
    const tids = listed(threads);
    if (!tids.some(taskCanRun)) return;
    cgroupCounters.killRounds++;
    await kill(tids);
    // Typically bubblewrap's init, which reported the command's exit and has yet to be given the CPU to exit
    // itself: its pipes closing is the first sign that it has.
    await (round === 0 && exitSign !== undefined ? Promise.race([pause(round), exitSign]) : pause(round));
  }
}

/** Whether `procs` lists no task at all (the exiting ones gone too), asked at a short interval, bounded in time. */
async function emptied(procs: string): Promise<boolean> {
  const deadline = Date.now() + EMPTY_LIMIT_MS;
  for (let round = 0; Date.now() < deadline; round++) {
    if (isEmpty(procs)) return true;
    cgroupCounters.emptyWaits++;
    await pause(round);
  }
  return false;
}

function pause(round: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, round < 10 ? 1 : 10));
}

/** The ids a cgroup's `cgroup.procs`, `cgroup.threads` or `tasks` file lists. */
function listed(file: string): number[] {
  return readOrEmpty(file).split('\n').filter(Boolean).map(Number);
}

/**
 * Whether task `tid` may still run code of its own: false once it is gone, a zombie, or exiting (PF_EXITING is set
 * when do_exit begins, after its last system call returned). True where /proc cannot tell.
 */
export function taskCanRun(tid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${tid}/stat`, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  return statCanRun(stat);
}

/** taskCanRun's reading of one /proc/<tid>/stat line. */
export function statCanRun(stat: string): boolean {
  // tid (comm) state ppid pgrp session tty_nr tpgid flags …; comm may hold spaces and parentheses, so from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const flags = Number(fields[6]);
  if (state === undefined || !Number.isInteger(flags)) return true;
  return state !== 'Z' && state !== 'X' && (flags & PF_EXITING) === 0;
}

/**
 * How often killAll had to kill (a task of the group could still run when it looked) and recycle had to wait for
 * exiting tasks to go: what tests read to see that a trivial command's run waits for neither.
 */
export const cgroupCounters = { killRounds: 0, emptyWaits: 0 };

/** The `oom_kill` count of a v1 memory.oom_control or v2 memory.events file (0 where it cannot be read). */
function oomKillCount(file: string): number {
  return Number(/^oom_kill (\d+)$/m.exec(readOrEmpty(file))?.[1] ?? 0);
}

/** Whether a cgroup's process list is empty; false where it cannot be read. */
function isEmpty(procs: string): boolean {
  try {
    return readFileSync(procs, 'utf8').trim() === '';
  } catch {
    return false;
  }
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
