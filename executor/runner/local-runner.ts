/**
 * The `local` runner: the command as a process on this host, in a sandbox of its own (sandbox/bubblewrap.ts:
 * namespaces, only its execution root writable, no network), under the slot's own uid, in a cgroup of its own
 * (sandbox/cgroups.ts: memory and process limits), and in a process group of its own (a new session).
 *
 * The run is over only when nothing of the command is left running: its process group is killed and waited for,
 * the sandbox's PID namespace dies with its init (the kernel kills whatever else is in it, setsid or not), and the
 * cgroup is killed until nothing in it can run again. Only then are outputs collected, so no process can change
 * them underneath. What the kernel is still tearing down (bubblewrap's init unmounting the sandbox) leaves the
 * cgroup after the result is on its way: the group is reused only once it is empty.
 *
 * Commands are started by the spawner (spawner/), a small helper process, so that starting one costs the
 * same whatever the executor's own memory, and their output never passes through the executor's event loop.
 */
import { lstat, readFile, rmdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { constants } from 'node:os';
import { LarderError } from '../../shared/errors.ts';
import { groupGone, signalGroup } from './process-group.ts';
import { notStarted, type Runner, type RunOutcome, type RunRequest } from './runner.ts';
import { type Bubblewrap, INPUT_ROOT_MOUNT_POINTS } from './sandbox/bubblewrap.ts';
import type { ActionCgroup, CgroupLimits, Cgroups } from './sandbox/cgroups.ts';
import { checkCommandSize } from './command-size.ts';
import { Spawner } from './spawner/spawner.ts';

/** After the group is gone, how long its output pipes may stay open (held by a process that left the group). */
const PIPE_DRAIN_LIMIT_MS = 2_000;

export interface LocalRunnerOptions {
  /** The namespace sandbox; null only with `--sandbox off`. */
  sandbox: Bubblewrap | null;
  /** Where action cgroups are made; null where this host gives larder none (not root, no hierarchy). */
  cgroups: Cgroups | null;
  limits: CgroupLimits;
  /** Whether actions that ask for the network (`network=on`) may have it. */
  allowNetwork: boolean;
}

export class LocalRunner implements Runner {
  readonly kind = 'local' as const;
  private readonly spawner = new Spawner();
  private nextGroup = 1;
  /** Emptied action cgroups waiting for the next action (at most as many as ran or emptied at once). */
  private readonly idleCgroups: ActionCgroup[] = [];
  private closed = false;

  constructor(private readonly options: LocalRunnerOptions) {}

  async run(request: RunRequest): Promise<RunOutcome> {
    const startedAt = new Date();
    const argv = this.commandLine(request);
    checkCommandSize(argv, request.env);
    const mountPoints =
      this.options.sandbox !== null && request.options.get('filesystem-root') === 'input'
        ? await missingMountPoints(request.execRoot)
        : [];
    const cgroup = await this.takeCgroup();
    try {
      return await this.runIn(request, argv, cgroup, startedAt);
    } finally {
      if (cgroup !== null) this.giveBack(cgroup);
      // The folders bubblewrap made in the input root to mount /proc, /dev and /tmp on are not the action's outputs.
      for (const path of mountPoints) await rmdir(path).catch(() => undefined);
    }
  }

  close(): void {
    this.closed = true;
    this.spawner.close();
    for (const cgroup of this.idleCgroups.splice(0)) void cgroup.remove();
  }

  private async takeCgroup(): Promise<ActionCgroup | null> {
    const idle = this.idleCgroups.pop();
    if (idle !== undefined) return idle;
    return (
      (await this.options.cgroups?.create(`action-${process.pid}-${this.nextGroup++}`, this.options.limits)) ?? null
    );
  }

  /**
   * Makes a group runIn killed idle again once no task is left in it. Not awaited: what may still be in it is
   * exiting (killAll), and the kernel's teardown need not hold up the action's result. A group that is empty
   * already is idle again at once (in the same turn of the event loop); until one that is not has emptied, the
   * next action takes another group (or makes one).
   */
  private giveBack(cgroup: ActionCgroup): void {
    void cgroup.recycle().then(async (empty) => {
      if (empty && !this.closed) this.idleCgroups.push(cgroup);
      else await cgroup.remove();
    });
  }

  /** The command line to spawn: the action's own, or bubblewrap running it in a sandbox. */
  private commandLine(request: RunRequest): readonly string[] {
    const network = request.options.get('network') === 'on';
    const rootIsInput = request.options.get('filesystem-root') === 'input';
    if (network && !this.options.allowNetwork)
      throw new LarderError(
        'invalid_argument',
        'network=on: this worker gives actions no network (the operator can allow it with --allow-network)',
      );
    if (this.options.sandbox === null) {
      if (rootIsInput)
        throw new LarderError(
          'invalid_argument',
          'filesystem-root=input needs the sandbox, which is off on this worker',
        );
      return request.argv;
    }
    return this.options.sandbox.argv(
      { execRoot: request.execRoot, cwd: request.cwd, network, rootIsInput },
      request.argv,
      request.user,
    );
  }

  private async runIn(
    request: RunRequest,
    argv: readonly string[],
    cgroup: ActionCgroup | null,
    startedAt: Date,
  ): Promise<RunOutcome> {
    const command = this.spawner.run({
      argv,
      cwd: request.cwd,
      env: request.env,
      user: request.user,
      stdoutPath: request.stdoutPath,
      stderrPath: request.stderrPath,
      maxOutputBytes: request.maxOutputBytes,
      cgroup: cgroup === null ? null : { enter: cgroup.enterFiles, leave: this.options.cgroups!.homeFiles },
    });
    const started = await command.started;
    if ('error' in started) {
      await command.output;
      if (started.error.code === 'E2BIG')
        throw new LarderError(
          'invalid_argument',
          `the command line or environment is too large for the kernel (E2BIG)`,
        );
      return notStarted(describeStartError(request.argv[0]!, started.error), startedAt);
    }

    let timedOut = false;
    let cancelled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(started.pid, 'SIGKILL');
    }, request.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      signalGroup(started.pid, 'SIGKILL');
    };
    if (request.signal.aborted) onAbort();
    else request.signal.addEventListener('abort', onAbort, { once: true });

    const ended = await command.exited;
    clearTimeout(timer);
    request.signal.removeEventListener('abort', onAbort);
    // Whatever the command left running goes too, and is waited for: its process group (groupGone kills it first),
    // then (the one thing a process cannot leave) its cgroup.
    await groupGone(started.pid);
    await cgroup?.killAll(command.output);
    const output = await drainWithin(command.output, () => command.abandon());
    const oomKilled = (await cgroup?.oomKilled()) ?? false;

    if (this.options.sandbox !== null && ended.code === 1 && output.stderrBytes !== 0) {
      // bubblewrap reports a command it could not start (no such program, a working directory that is not
      // there) as one line of its own on stderr and exit status 1.
      const why = await sandboxStartError(request.stderrPath);
      if (why !== null) return notStarted(describeStartError(request.argv[0]!, why), startedAt);
    }
    const signal = oomKilled && ended.signal === null ? 'SIGKILL' : ended.signal;
    const exitCode = oomKilled
      ? 137
      : (ended.code ?? 128 + (ended.signal === null ? 0 : (constants.signals[ended.signal] ?? 0)));
    return {
      exitCode,
      signal,
      timedOut,
      cancelled,
      startError: null,
      outputTruncated: output.truncated,
      outputError: output.writeError,
      outputBytes: { stdout: output.stdoutBytes, stderr: output.stderrBytes },
      oomKilled,
      startedAt,
      endedAt: new Date(),
    };
  }
}

/** The mount points of an input root used as `/` that it does not have itself (bubblewrap creates them). */
async function missingMountPoints(execRoot: string): Promise<string[]> {
  const missing: string[] = [];
  for (const name of INPUT_ROOT_MOUNT_POINTS) {
    const path = join(execRoot, name);
    if ((await lstat(path).catch(() => null)) === null) missing.push(path);
  }
  return missing;
}

/**
 * bubblewrap's own complaint when stderr holds only that, as the error it names (and then removed from the
 * action's stderr), so it is described in the same words as a spawn that failed outside the sandbox.
 */
async function sandboxStartError(stderrPath: string): Promise<NodeJS.ErrnoException | null> {
  const text = await readFile(stderrPath, 'utf8').catch(() => '');
  const match = /^bwrap: (?:execvp [^\n]*?|Can't chdir to [^\n]*?): ([^\n]*)\n?$/.exec(text);
  if (match === null) return null;
  await truncate(stderrPath, 0).catch(() => undefined);
  const why = match[1]!;
  const code = why === 'No such file or directory' ? 'ENOENT' : why === 'Permission denied' ? 'EACCES' : undefined;
  return Object.assign(new Error(why), { code });
}

/** The output, once both pipes closed; after PIPE_DRAIN_LIMIT_MS the pipes are abandoned and what was written counts. */
async function drainWithin<T>(output: Promise<T>, abandon: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      abandon();
      resolve();
    }, PIPE_DRAIN_LIMIT_MS);
  });
  await Promise.race([output, late]);
  clearTimeout(timer);
  return output;
}

function describeStartError(program: string, error: NodeJS.ErrnoException): string {
  const why =
    error.code === 'ENOENT'
      ? 'no such file or program'
      : error.code === 'EACCES'
        ? 'permission denied (not executable?)'
        : error.message;
  return `larder: cannot start ${JSON.stringify(program)}: ${why}`;
}
