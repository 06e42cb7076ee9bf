// The local runner and its action cgroups (real bubblewrap, real cgroups, as root in CI): a run ends once nothing
// in its group can run again, without waiting for the kernel to finish tearing down what is exiting, and a group
// is reused only once it is empty.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalRunner } from '../../../executor/runner/local-runner.ts';
import type { RunRequest } from '../../../executor/runner/runner.ts';
import { Bubblewrap, findBubblewrap } from '../../../executor/runner/sandbox/bubblewrap.ts';
import {
  type ActionCgroup,
  type Cgroups,
  openCgroups,
  statCanRun,
  taskCanRun,
} from '../../../executor/runner/sandbox/cgroups.ts';

const isRoot = process.getuid?.() === 0;

/** A /proc/<tid>/stat line with the given state and flags (the fields after them do not matter here). */
const statLine = (comm: string, state: string, flags: number) =>
  `4242 (${comm}) ${state} 1 4242 4242 0 -1 ${flags} 56 63 0 0 0 0 0 0 20 0 1 0`;

describe('whether a task of a cgroup can still run', () => {
  it('reads the state and PF_EXITING from a stat line, whatever the command name holds', () => {
    expect(statCanRun(statLine('bwrap', 'R', 0x400040))).toBe(true);
    expect(statCanRun(statLine('bwrap', 'D', 0x400044))).toBe(false); // PF_EXITING: do_exit has begun
    expect(statCanRun(statLine('sh', 'Z', 0x400044))).toBe(false);
    expect(statCanRun(statLine('a) Z 1 2 3 4 5 4 (b', 'S', 0x400000))).toBe(true);
    expect(statCanRun('')).toBe(true); // cannot tell: counts as live
  });

  it('is true for a live process, false for a zombie and for a pid that is gone', async () => {
    // `cat` waits on a FIFO until the test opens it; by then its parent has exec'd into sleep, which never reaps it.
    const fifo = join(mkdtempSync(join(tmpdir(), 'larder-zombie-')), 'fifo');
    execFileSync('mkfifo', [fifo]);
    const parent = spawn('/bin/sh', ['-c', 'cat "$0" >/dev/null & echo $!; exec sleep 30', fifo], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const child = Number((await new Promise<Buffer>((resolve) => parent.stdout.once('data', resolve))).toString());
      expect(taskCanRun(child)).toBe(true);
      await until(() => readFileSync(`/proc/${parent.pid}/comm`, 'utf8') === 'sleep\n');
      writeFileSync(fifo, ''); // cat sees the end of its input and exits
      // (On the way it is briefly exiting: PF_EXITING, which taskCanRun already reads as done.)
      await until(() => / Z /.test(readFileSync(`/proc/${child}/stat`, 'utf8')));
      expect(taskCanRun(child)).toBe(false);
      expect(taskCanRun(parent.pid!)).toBe(true);
    } finally {
      parent.kill('SIGKILL');
      rmSync(dirname(fifo), { recursive: true, force: true });
    }
    await new Promise((resolve) => parent.once('exit', resolve));
    expect(taskCanRun(parent.pid!)).toBe(false);
  });
});

/** Resolves once `check` holds, asked once per turn of the event loop, at most 10,000 times. */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (check()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error('the awaited state never came');
}

describe.runIf(isRoot || process.env.CI === 'true')('a sandboxed run and its cgroup', () => {
  const dir = mkdtempSync(join(tmpdir(), 'larder-runner-cgroups-'));
  const prefix = `larder-test-runner-${process.pid}`;
  let runner: LocalRunner | undefined;
  afterAll(async () => {
    runner?.close();
    // A second open sweeps what is left under the prefix (the groups made here), then the prefix itself goes.
    await openCgroups(prefix);
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, path] = line.split(':');
      for (const controller of controllers?.split(',') ?? [])
        if (['memory', 'pids', 'freezer'].includes(controller))
          rmdirSafe(join('/sys/fs/cgroup', controller, path ?? '/', prefix));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('ends without waiting for its group to empty, and the group is reused only once it has', async () => {
    if (!isRoot) throw new Error('action cgroups need root (CI runs as root)');
    const bwrap = findBubblewrap();
    if (bwrap === null) throw new Error('bubblewrap is not installed (apt-get install bubblewrap)');
    const real = await openCgroups(prefix);
    if ('unavailable' in real) throw new Error(real.unavailable);
    // The real groups, with the first readying (recycle) held until the test lets it go: a group whose last
    // action's bubblewrap init is still exiting, made to stay so.
    const made: ActionCgroup[] = [];
    const innerOf = new Map<ActionCgroup, ActionCgroup>();
    const recycled: ActionCgroup[] = [];
    /** Whether each group was empty when a run entered it (the spawner reads its files to enter it). */
    const emptyWhenEntered: boolean[] = [];
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    let recycling!: () => void;
    const firstRecycling = new Promise<void>((resolve) => (recycling = resolve));
    let readied!: () => void;
    const heldReadied = new Promise<void>((resolve) => (readied = resolve));
    const cgroups: Cgroups = {
      version: real.version,
      homeFiles: real.homeFiles,
      async create(name, limits) {
        const group = await real.create(name, limits);
        const watched: ActionCgroup = {
          get enterFiles() {
            emptyWhenEntered.push(tasksOf(group).length === 0);
            return group.enterFiles;
          },
          killAll: (sign) => group.killAll(sign),
          oomKilled: () => group.oomKilled(),
          recycle: async () => {
            recycled.push(watched);
            if (recycled.length > 1) return group.recycle();
            recycling();
            await held;
            const empty = await group.recycle();
            readied();
            return empty;
          },
          remove: () => group.remove(),
        };
        made.push(watched);
        innerOf.set(watched, group);
        return watched;
      },
    };
    const execRoot = join(dir, 'root');
    mkdirSync(execRoot);
    runner = new LocalRunner({
      sandbox: new Bubblewrap(bwrap, []),
      cgroups,
      limits: { memoryBytes: 256 * 2 ** 20, pids: 64 },
      allowNetwork: false,
    });
    const run = (name: string) =>
      runner!.run(runRequest(execRoot, join(dir, `${name}.out`), join(dir, `${name}.err`), ['/bin/true']));

    const first = run('first');
    await firstRecycling;
    // The first run comes back though its group is not readied yet (one turn of the event loop is all it takes).
    const ended = await Promise.race([
      first.then(() => 'ended'),
      new Promise((resolve) => setImmediate(() => resolve('waits for its group'))),
    ]);
    expect(ended).toBe('ended');
    expect((await first).exitCode).toBe(0);
    // Nothing in its group can run any more.
    // (Groups are compared by their index in `made`: an assertion on one would read, and count, its enterFiles.)
    expect(recycled.map((g) => made.indexOf(g))).toEqual([0]);
    expect(tasksOf(innerOf.get(made[0]!)!).filter(taskCanRun)).toEqual([]);
    // Not back yet, so the second run is given another group.
    expect((await run('second')).exitCode).toBe(0);
    expect(made.indexOf(recycled[1]!)).not.toBe(0);

    letGo();
    await heldReadied;
    // The runner makes it idle in the same turn of the event loop that readied it.
    await new Promise((resolve) => setImmediate(resolve));
    expect((await run('third')).exitCode).toBe(0);
    expect(made.indexOf(recycled[2]!)).toBe(0);
    for (let i = 0; i < 8; i++) expect((await run(`again-${i}`)).exitCode).toBe(0);
    // Every run entered a group with nothing in it.
    expect(emptyWhenEntered).toHaveLength(11);
    expect(emptyWhenEntered.every(Boolean)).toBe(true);
  });
});

function runRequest(execRoot: string, stdoutPath: string, stderrPath: string, argv: string[]): RunRequest {
  return {
    argv,
    env: { PATH: '/usr/bin:/bin' },
    execRoot,
    cwd: execRoot,
    timeoutMs: 60_000,
    signal: new AbortController().signal,
    stdoutPath,
    stderrPath,
    maxOutputBytes: 1 << 20,
    user: null,
    options: new Map(),
  };
}

/** The tids a group's `tasks` (v1, the freezer's) or `cgroup.threads` (v2) lists. */
function tasksOf(group: ActionCgroup): number[] {
  const files = group.enterFiles;
  const file = files[0]!.endsWith('/tasks')
    ? files.find((f) => f.includes('/freezer/'))!
    : files[0]!.replace(/cgroup\.procs$/, 'cgroup.threads');
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
}

function rmdirSafe(path: string): void {
  try {
    rmdirSync(path);
  } catch {
    // not made in this hierarchy
  }
}
