/**
 * Exec in a running container: create, start as a hijacked stream, inspect. The engine has no endpoint to kill an
 * exec, so a kill signals the exec's host PID (from inspect); whatever that process started stays in the
 * container, whose owner then discards it.
 */
import type { Socket } from 'node:net';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { EngineError, type DockerEngine } from './engine.ts';
import { FrameDemuxer } from './frames.ts';

export interface ExecCommand {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Working directory inside the container. */
  readonly cwd: string;
  /** `uid:gid`. */
  readonly user: string;
}

/** How long an exec may still be "running" after its stream closed (the engine notes the exit a moment later). */
const EXIT_NOTE_LIMIT_MS = 5_000;

export async function createExec(
  engine: DockerEngine,
  containerId: string,
  command: ExecCommand,
  attachStdin: boolean,
): Promise<string> {
  // Without a user, an exec runs as the container's: in a warm container that is its init's root (container.ts).
  if (!/^[1-9][0-9]*:[0-9]+$/.test(command.user))
    throw new Error(`an exec in a container needs an unprivileged uid:gid, not ${JSON.stringify(command.user)}`);
  const created = await engine.call<{ Id: string }>('POST', `/containers/${containerId}/exec`, {
    AttachStdin: attachStdin,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    Cmd: command.argv,
    Env: Object.entries(command.env).map(([name, value]) => `${name}=${value}`),
    WorkingDir: command.cwd,
    User: command.user,
  });
  return created.Id;
}

/** Starts the exec attached: the socket carries stdin one way and framed stdout/stderr the other. */
export function startExec(engine: DockerEngine, execId: string): Promise<Socket> {
  return engine.hijack(`/exec/${execId}/start`, { Detach: false, Tty: false });
}

export interface ExecState {
  running: boolean;
  exitCode: number | null;
  /** Host PID of the exec'd process (0 once it is gone). */
  pid: number;
}

/** null when the exec is gone with its container. */
export async function inspectExec(engine: DockerEngine, execId: string): Promise<ExecState | null> {
  try {
    const info = await engine.call<{ Running: boolean; ExitCode: number | null; Pid: number }>(
      'GET',
      `/exec/${execId}/json`,
    );
    return { running: info.Running, exitCode: info.ExitCode, pid: info.Pid };
  } catch (err) {
    if (err instanceof EngineError && err.status === 404) return null;
    throw err;
  }
}

/** The exit code once the engine has noted the exit (its stream has closed); null if the container is gone. */
export async function exitCodeOf(engine: DockerEngine, execId: string): Promise<number | null> {
  const deadline = Date.now() + EXIT_NOTE_LIMIT_MS;
  for (;;) {
    const state = await inspectExec(engine, execId);
    if (state === null) return null;
    if (!state.running || Date.now() > deadline) return state.running ? null : state.exitCode;
    // The stream closes when the process's stdio does; the engine records the exit right after: a short wait.
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** SIGKILLs the exec'd process by its host PID (no-op once it is gone). */
export async function killExec(engine: DockerEngine, execId: string): Promise<void> {
  const deadline = Date.now() + EXIT_NOTE_LIMIT_MS;
  let state = await inspectExec(engine, execId);
  // Right after the start the engine reports Pid 0 for a moment: the process is being spawned.
  while (state?.running && state.pid <= 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    state = await inspectExec(engine, execId);
  }
  if (state === null || !state.running || state.pid <= 0) return;
  try {
    process.kill(state.pid, 'SIGKILL');
  } catch {
    // ESRCH: it just ended
  }
}

/** A long-lived process in a container with its stdio as streams (a persistent worker). */
export interface AttachedExec {
  /** The process's stdin; end() delivers EOF (a half-close of the hijacked socket). */
  readonly stdin: Writable;
  /** Demultiplexed stdout and stderr; both end when the process's output closes. */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** SIGKILLs the process and resolves once its exit is known. */
  kill(): Promise<void>;
  /** The exit code (137 when killed; -1 if the container went away with it). Never rejects. */
  readonly exited: Promise<number>;
}

/** Starts `command` in the running container, attached; see AttachedExec. */
export async function attachExec(
  engine: DockerEngine,
  containerId: string,
  command: ExecCommand,
): Promise<AttachedExec> {
  const execId = await createExec(engine, containerId, command, true);
  const socket = await startExec(engine, execId);
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const demuxer = new FrameDemuxer((stream, data) => {
    const target = stream === 2 ? stderr : stdout;
    // Backpressure: a reader that stops reading stops the socket, and so the process, not our memory.
    if (!target.write(data)) {
      socket.pause();
      target.once('drain', () => socket.resume());
    }
  });
  socket.on('data', (chunk: Buffer) => demuxer.push(chunk));
  const closed = new Promise<void>((resolve) => {
    socket.once('close', () => {
      stdout.end();
      stderr.end();
      resolve();
    });
    socket.once('error', () => socket.destroy());
  });
  const stdin = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      if (socket.destroyed) callback(new Error('the process has exited'));
      else socket.write(chunk, callback);
    },
    final: (callback) => {
      if (!socket.destroyed) socket.end(); // half-close: EOF on the process's stdin, its output keeps coming
      callback();
    },
  });
  const exited = closed
    .then(() => exitCodeOf(engine, execId))
    .then(
      (code) => code ?? -1,
      () => -1,
    );
  return {
    stdin,
    stdout,
    stderr,
    exited,
    async kill() {
      await killExec(engine, execId).catch(() => undefined);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, EXIT_NOTE_LIMIT_MS).unref())]);
      socket.destroy();
    },
  };
}
