/**
 * An action in a container of its own: create, attach, start, wait, collect, remove. Race-free: the attach is in
 * place before the start, so no output is missed, and the wait is asked for after the start with
 * `condition=not-running`, which a container that has already exited answers at once with its exit code. (A
 * `next-exit` wait sent before the start is not: the engine may take the start first, and a quick command's exit
 * then passes before the wait is registered, which leaves the wait, and the action, hanging for good.) The
 * command is PID 1, so when it exits the kernel kills everything else in the container: once the engine reports
 * the exit, nothing the command started is left.
 */
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import { notStarted, type RunOutcome, type RunRequest } from '../runner.ts';
import { createContainer, type DockerLimits, inspectContainer, removeContainer } from './container.ts';
import { EngineError, type DockerEngine } from './engine.ts';
import { FrameDemuxer } from './frames.ts';
import { BoundedOutput } from './output.ts';
import type { DockerSpec } from './spec.ts';
import { oomNote, streamClosed } from './outcome.ts';

export async function runOneShot(
  engine: DockerEngine,
  spec: DockerSpec,
  limits: DockerLimits,
  request: RunRequest,
  owner: string,
): Promise<RunOutcome> {
  const startedAt = new Date();
  const [program, ...args] = request.argv;
  const id = await createContainer(engine, {
    spec,
    limits,
    binds: [`${request.execRoot}:${request.execRoot}`],
    entrypoint: [program!],
    cmd: args,
    env: request.env,
    workingDir: request.cwd,
    warm: false,
    attach: true,
    role: 'action',
    owner,
  });
  const output = new BoundedOutput({ stdout: request.stdoutPath, stderr: request.stderrPath }, request.maxOutputBytes);
  let socket: Socket | undefined;
  try {
    socket = await engine.hijack(`/containers/${id}/attach?stream=1&stdout=1&stderr=1`, {});
    const stream = socket;
    const demuxer = new FrameDemuxer((which, data) => output.write(which, data, stream));
    stream.on('data', (chunk: Buffer) => demuxer.push(chunk));
    const drained = streamClosed(stream);

    try {
      await engine.call('POST', `/containers/${id}/start`);
    } catch (err) {
      // The runtime could not exec the program (no such file, not executable): the local runner's exit 127.
      if (err instanceof EngineError && err.status >= 400 && err.status < 500) {
        return notStarted(
          `larder: cannot start ${JSON.stringify(program)} in ${spec.image}: ${err.message}`,
          startedAt,
        );
      }
      throw err;
    }
    const exit = engine.call<{ StatusCode: number }>(
      'POST',
      `/containers/${id}/wait?condition=not-running`,
      undefined,
      {
        timeoutMs: 0,
      },
    );
    exit.catch(() => undefined);

    let timedOut = false;
    let cancelled = false;
    const kill = () => engine.call('POST', `/containers/${id}/kill?signal=KILL`).catch(() => undefined);
    const timer = setTimeout(() => {
      timedOut = true;
      void kill();
    }, request.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      void kill();
    };
    if (request.signal.aborted) onAbort();
    else request.signal.addEventListener('abort', onAbort, { once: true });
    let exitCode: number;
    try {
      exitCode = (await exit).StatusCode;
    } finally {
      clearTimeout(timer);
      request.signal.removeEventListener('abort', onAbort);
    }
    await drained;
    const state = await inspectContainer(engine, id);
    if (state.oomKilled) output.note(oomNote(limits));
    const killed = timedOut || cancelled || state.oomKilled;
    return {
      exitCode: killed ? 128 + constants.signals.SIGKILL : exitCode,
      signal: killed ? 'SIGKILL' : null,
      timedOut,
      cancelled,
      startError: null,
      outputTruncated: output.truncated,
      oomKilled: state.oomKilled,
      startedAt,
      endedAt: new Date(),
    };
  } finally {
    socket?.destroy();
    await output.close();
    await removeContainer(engine, id);
  }
}
