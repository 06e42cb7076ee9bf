/**
 * An action as an exec in a warm container. The timeout and cancellation remove the whole container (the engine
 * cannot kill an exec, and whatever the command started must go too). After a normal end the container is
 * reusable only if the command exited 0, nothing was OOM-killed in it (the cgroup's counter, since the engine's
 * OOMKilled flag ignores exec'd processes) and no process of the action is left behind. An OOM kill of any of
 * its processes ends the action as exit 137, whatever the command's own exit code.
 */
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import type { RunOutcome, RunRequest } from '../runner.ts';
import { oomKills } from './cgroup.ts';
import { type DockerLimits, removeContainer } from './container.ts';
import type { DockerEngine } from './engine.ts';
import { createExec, exitCodeOf, inspectExec, startExec } from './exec.ts';
import { FrameDemuxer } from './frames.ts';
import { oomNote, streamClosed } from './outcome.ts';
import { BoundedOutput } from './output.ts';
import { leftovers, type WarmContainer } from './pool.ts';

/** While a command's output stream is open, how often to ask whether the command itself has exited. */
const EXIT_POLL_MS = 200;

export async function runWarm(
  engine: DockerEngine,
  container: WarmContainer,
  limits: DockerLimits,
  request: RunRequest,
): Promise<{ outcome: RunOutcome; reusable: boolean }> {
  const startedAt = new Date();
  const oomBefore = await oomKills(container.pid);
  const execId = await createExec(
    engine,
    container.id,
    { argv: request.argv, env: request.env, cwd: request.cwd, user: container.spec.user },
    false,
  );
  const output = new BoundedOutput({ stdout: request.stdoutPath, stderr: request.stderrPath }, request.maxOutputBytes);
  let socket: Socket | undefined;
  let timedOut = false;
  let cancelled = false;
  let removed: Promise<void> | undefined;
  const discard = () => (removed ??= removeContainer(engine, container.id).catch(() => undefined));
  const timer = setTimeout(() => {
    timedOut = true;
    void discard();
  }, request.timeoutMs);
  const onAbort = () => {
    cancelled = true;
    void discard();
  };
  try {
    socket = await startExec(engine, execId);
    const stream = socket;
    const demuxer = new FrameDemuxer((which, data) => output.write(which, data, stream));
    stream.on('data', (chunk: Buffer) => demuxer.push(chunk));
    if (request.signal.aborted) onAbort();
    else request.signal.addEventListener('abort', onAbort, { once: true });
    // The stream stays open while anything holds the command's stdout; a background process that does must not
    // keep the action running once the command itself has exited (it is a leftover, and the container goes).
    await streamClosed(stream, commandExited(engine, execId, stream));
  } finally {
    clearTimeout(timer);
    request.signal.removeEventListener('abort', onAbort);
    socket?.destroy();
  }
  const exitCode = removed === undefined ? await exitCodeOf(engine, execId) : null;
  const oomAfter = removed === undefined ? await oomKills(container.pid) : null;
  const oomKilled = oomBefore !== null && oomAfter !== null && oomAfter > oomBefore;
  if (oomKilled) output.note(oomNote(limits));
  await output.close();
  const left = removed === undefined ? await leftovers(container) : [];
  // An OOM kill of any process of the action fails it, as in a container of its own, even when the command
  // itself carried on and exited 0: its outputs may be missing what the killed process was to write.
  const killed = timedOut || cancelled || exitCode === null || oomKilled;
  const outcome: RunOutcome = {
    exitCode: killed ? 128 + constants.signals.SIGKILL : exitCode,
    signal: killed ? 'SIGKILL' : null,
    timedOut,
    cancelled,
    startError: null,
    outputTruncated: output.truncated,
    oomKilled,
    startedAt,
    endedAt: new Date(),
  };
  await removed;
  return {
    outcome,
    reusable: removed === undefined && exitCode === 0 && !oomKilled && left !== null && left.length === 0,
  };
}

/** Resolves once the engine says the exec'd process has exited (asked every EXIT_POLL_MS while the stream is open). */
async function commandExited(engine: DockerEngine, execId: string, stream: Socket): Promise<void> {
  while (!stream.destroyed) {
    await new Promise((resolve) => setTimeout(resolve, EXIT_POLL_MS));
    if (stream.destroyed) return;
    const state = await inspectExec(engine, execId).catch(() => null);
    if (state === null || !state.running) return;
  }
}
