/**
 * The `local` runner: the command as a process on this host, in its own process group (a new session), so a
 * timeout or a cancellation kills everything it started, not just the parent: an orphaned child writing into
 * a directory that is about to be reused is how other systems corrupted retried actions. The run is over only
 * when the whole group is gone, even when the parent exited normally and left background processes behind.
 *
 * Commands are started by the spawner (spawner/), a small helper process, so that starting one costs the
 * same whatever the executor's own memory, and their output never passes through the executor's event loop.
 */
import { constants } from 'node:os';
import { groupGone, signalGroup } from './process-group.ts';
import type { Runner, RunOutcome, RunRequest } from './runner.ts';
import { Spawner } from './spawner/spawner.ts';

/** After the group is gone, how long its output pipes may stay open (held by a process that left the group). */
const PIPE_DRAIN_LIMIT_MS = 2_000;

export class LocalRunner implements Runner {
  readonly kind = 'local' as const;
  private readonly spawner = new Spawner();

  async run(request: RunRequest): Promise<RunOutcome> {
    const startedAt = new Date();
    const command = this.spawner.run({
      argv: request.argv,
      cwd: request.cwd,
      env: request.env,
      user: request.user,
      stdoutPath: request.stdoutPath,
      stderrPath: request.stderrPath,
      maxOutputBytes: request.maxOutputBytes,
    });
    const started = await command.started;
    if ('error' in started) {
      await command.output;
      return {
        exitCode: 127,
        signal: null,
        timedOut: false,
        cancelled: false,
        startError: describeStartError(request.argv[0]!, started.error),
        outputTruncated: false,
        startedAt,
        endedAt: new Date(),
      };
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
    // Whatever the command left running in its group goes too, and is waited for.
    signalGroup(started.pid, 'SIGKILL');
    await groupGone(started.pid);
    const output = await drainWithin(command.output, () => command.abandon());

    const exitCode = ended.code ?? 128 + (ended.signal === null ? 0 : (constants.signals[ended.signal] ?? 0));
    return {
      exitCode,
      signal: ended.signal,
      timedOut,
      cancelled,
      startError: null,
      outputTruncated: output.truncated,
      startedAt,
      endedAt: new Date(),
    };
  }

  close(): void {
    this.spawner.close();
  }
}

/** The output, once both pipes closed; after PIPE_DRAIN_LIMIT_MS the pipes are abandoned and what was written counts. */
async function drainWithin(
  output: Promise<{ truncated: boolean }>,
  abandon: () => void,
): Promise<{ truncated: boolean }> {
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
