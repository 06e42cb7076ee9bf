/**
 * The `local` runner: the command as a process on this host, in its own process group (a new session), so a
 * timeout or a cancellation kills everything it started, not just the parent: an orphaned child writing into
 * a directory that is about to be reused is how other systems corrupted retried actions. The run is over only
 * when the whole group is gone, even when the parent exited normally and left background processes behind.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { groupGone, signalGroup } from './process-group.ts';
import type { Runner, RunOutcome, RunRequest } from './runner.ts';

/** After the group is gone, how long its output pipes may stay open (held by a process that left the group). */
const PIPE_DRAIN_LIMIT_MS = 2_000;

export class LocalRunner implements Runner {
  readonly kind = 'local' as const;

  async run(request: RunRequest): Promise<RunOutcome> {
    const startedAt = new Date();
    const [program, ...args] = request.argv;
    const child = spawn(program!, args, {
      cwd: request.cwd,
      env: { ...request.env },
      detached: true, // setsid(): the command leads a process group of its own
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(request.user === null ? {} : { uid: request.user.uid, gid: request.user.gid }),
    });
    const output = { bytes: 0, truncated: false };
    const copies = [copyBounded(child.stdout!, request.stdoutPath, request.maxOutputBytes, output), copyBounded(child.stderr!, request.stderrPath, request.maxOutputBytes, output)];

    let timedOut = false;
    let cancelled = false;
    const killGroup = () => signalGroup(child.pid, 'SIGKILL');
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, request.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      killGroup();
    };
    if (request.signal.aborted) onAbort();
    else request.signal.addEventListener('abort', onAbort, { once: true });

    const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error: Error | null }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => resolve({ code, signal, error: null }));
    });
    clearTimeout(timer);
    request.signal.removeEventListener('abort', onAbort);
    if (child.pid !== undefined) {
      // Whatever the command left running in its group goes too, and is waited for.
      killGroup();
      await groupGone(child.pid);
    }
    await drainWithin(copies, [child.stdout!, child.stderr!]);

    if (ended.error !== null) {
      return { exitCode: 127, signal: null, timedOut: false, cancelled, startError: describeStartError(program!, ended.error), outputTruncated: output.truncated, startedAt, endedAt: new Date() };
    }
    const exitCode = ended.code ?? 128 + (ended.signal === null ? 0 : (constants.signals[ended.signal] ?? 0));
    return { exitCode, signal: ended.signal, timedOut, cancelled, startError: null, outputTruncated: output.truncated, startedAt, endedAt: new Date() };
  }
}

/** Copies a pipe into a file, keeping at most `limit` bytes of both streams together and discarding the rest. */
async function copyBounded(source: Readable, path: string, limit: number, budget: { bytes: number; truncated: boolean }): Promise<void> {
  const file = createWriteStream(path, { mode: 0o600 });
  source.on('data', (chunk: Buffer) => {
    const room = limit - budget.bytes;
    if (room <= 0) {
      budget.truncated = true;
      return;
    }
    const kept = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    if (kept !== chunk) budget.truncated = true;
    budget.bytes += kept.byteLength;
    // Backpressure: a command that writes faster than the disk takes it waits on its pipe.
    if (!file.write(kept)) {
      source.pause();
      file.once('drain', () => source.resume());
    }
  });
  await finished(source).catch(() => undefined);
  file.end();
  await finished(file);
}

async function drainWithin(copies: Promise<void>[], pipes: Readable[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      for (const pipe of pipes) pipe.destroy();
      resolve();
    }, PIPE_DRAIN_LIMIT_MS);
  });
  await Promise.race([Promise.all(copies), limit]);
  clearTimeout(timer);
  await Promise.all(copies);
}

function describeStartError(program: string, error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file or program' : code === 'EACCES' ? 'permission denied (not executable?)' : error.message;
  return `larder: cannot start ${JSON.stringify(program)}: ${why}`;
}
