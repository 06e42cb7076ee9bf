// @ts-check
/**
 * The spawner: a small helper process that starts actions' commands for the local runner. fork() copies the
 * parent's page tables, so a command started from the executor itself costs time in proportion to the
 * executor's memory (measured here: ~1 ms from a 50 MB process, ~5 ms of CPU from 250 MB, ~14 ms from 650 MB,
 * all on the event loop). Started from this process, whose memory stays small and which does nothing else, a
 * command costs the same whatever the executor holds, and its output is copied here, off the executor's main
 * thread.
 *
 * Plain JavaScript with no imports beyond Node's, so it starts in milliseconds without the TypeScript loader.
 * Protocol (IPC, JSON), keyed by the request id:
 *   ← { type: 'run', id, argv, cwd, env, user, stdoutPath, stderrPath, maxOutputBytes, cgroup }
 *   → { type: 'started', id, pid } | { type: 'error', id, code, message }
 *   → { type: 'exit', id, code, signal, output? }   the command's leader exited (its group may live on); with
 *                                                   `output` when the pipes had closed by then too (the usual
 *                                                   case), so that no 'output' message follows
 *   → { type: 'output', id, truncated, writeError, stdoutBytes, stderrBytes }
 *                                                   both pipes are closed and the files written (or, with
 *                                                   writeError, what made writing them fail: ENOSPC…); a
 *                                                   stream that carried nothing leaves no file; the byte
 *                                                   counts are what was written into each file
 *   ← { type: 'abandon', id }                       stop waiting for the pipes (a process left the group)
 *
 * `cgroup`, when set, is { enter: [files], leave: [files] }: this process writes its own pid into each `enter`
 * file, forks the command, and writes itself back into each `leave` file, all in one synchronous stretch, so the
 * command is inside the action's cgroup from its first instruction and nothing it starts can be outside.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';

/**
 * A started command: its pid (or why it could not start), its exit, and its two output pipes.
 * @typedef {{
 *   started: Promise<{ pid: number } | { error: NodeJS.ErrnoException }>,
 *   exited: Promise<{ code: number | null, signal: string | null }>,
 *   stdout: PipeReader,
 *   stderr: PipeReader,
 * }} Command
 * @typedef {{ read(): Promise<{ done: boolean, value?: Uint8Array }>, stop(): void }} PipeReader
 */

/** @type {Map<number, Command>} */
const running = new Map();

/** Bun's own spawn where this runs on Bun (see start); node:child_process elsewhere. */
const bun = /** @type {any} */ (globalThis).Bun;

/**
 * Moving a process into a cgroup takes a kernel lock (cgroup_threadgroup_rwsem) whose first writer after a quiet
 * spell waits out a whole RCU grace period (rcu_sync) before it may move anything. Measured on a 2-core host with
 * cgroup v1: ~11 ms per action at one action every 30 ms, 0.15 ms when some cgroup write came within the last
 * few ms; more than the sandbox costs. So for a while after starting a command in a cgroup this process moves
 * itself, every few ms, into the cgroup it is already in: nothing changes, and the next action's move is cheap.
 * (Hosts that mount their cgroups with `favordynmods` keep that lock cheap for good.)
 */
const WARM_EVERY_MS = 4;
const WARM_FOR_MS = 1_000;
let warmUntil = 0;
/** @type {NodeJS.Timeout | null} */
let warming = null;

process.on('message', (/** @type {any} */ message) => {
  if (message.type === 'run') run(message);
  else if (message.type === 'abandon') {
    const command = running.get(message.id);
    command?.stdout.stop();
    command?.stderr.stop();
  }
});
// The executor is gone: nothing more will be asked, and nobody would read the answers.
process.on('disconnect', () => process.exit(0));

/** @param {any} request */
function run(request) {
  const [program, ...args] = request.argv;
  /** @type {Command} */
  let command;
  try {
    if (request.cgroup) moveSelf(request.cgroup.enter);
    try {
      command = start(program, args, request);
    } finally {
      if (request.cgroup) leaveOrDie(request.cgroup.leave);
    }
    if (request.cgroup) keepMovesCheap(request.cgroup.leave);
  } catch (/** @type {any} */ error) {
    // A spawn may throw at once (E2BIG: an argument or environment too large for the kernel; on Bun, a program
    // that is not there): that is this command's failure, never the spawner's, whose other commands run on.
    send({ type: 'error', id: request.id, code: error.code ?? 'ESPAWN', message: error.message });
    send({ type: 'output', id: request.id, truncated: false, writeError: null, stdoutBytes: 0, stderrBytes: 0 });
    return;
  }
  running.set(request.id, command);
  const budget = { bytes: 0, truncated: false, /** @type {string | null} */ writeError: null };
  const written = { stdout: 0, stderr: 0 };
  // Each message wakes the executor's event loop: exit and output go as one when the pipes closed by then.
  /** @type {object | null} */
  let output = null;
  let outputSent = false;
  let exited = false;
  const sendOutput = () => {
    if (outputSent || output === null) return;
    outputSent = true;
    send({ type: 'output', id: request.id, ...output });
  };
  const counter = (/** @type {'stdout' | 'stderr'} */ stream) => (/** @type {number} */ bytes) => {
    written[stream] += bytes;
  };
  void Promise.all([
    copyBounded(command.stdout, request.stdoutPath, request.maxOutputBytes, budget, counter('stdout')),
    copyBounded(command.stderr, request.stderrPath, request.maxOutputBytes, budget, counter('stderr')),
  ]).then(() => {
    running.delete(request.id);
    output = {
      truncated: budget.truncated,
      writeError: budget.writeError,
      stdoutBytes: written.stdout,
      stderrBytes: written.stderr,
    };
    if (exited) sendOutput();
  });
  void command.started.then((started) => {
    if ('pid' in started) {
      send({ type: 'started', id: request.id, pid: started.pid });
      return;
    }
    // A command that could not start has no exit: its output follows the error on its own.
    send({ type: 'error', id: request.id, code: started.error.code ?? '', message: started.error.message });
    exited = true;
    sendOutput();
  });
  void command.exited.then(({ code, signal }) =>
    // The pipes' end-of-file is usually read in the same turn of the event loop as the exit.
    setImmediate(() => {
      exited = true;
      if (output === null) send({ type: 'exit', id: request.id, code, signal });
      else {
        outputSent = true;
        send({ type: 'exit', id: request.id, code, signal, output });
      }
    }),
  );
}

/**
 * Starts `program` as the request says: in its own session (setsid: it leads a process group of its own), as its
 * user, stdout and stderr to pipes. On Bun with Bun.spawn, which node:child_process wraps there: measured on a
 * 2-core host, 200 runs of /bin/true one after another (pipes, setsid, a uid), 2.0–2.3 ms p50 to exit and its
 * pipes closed and 0.43–0.55 ms of this process's CPU each, against 2.2–2.5 ms and 0.66–0.98 ms through the wrapper.
 * @param {string} program
 * @param {string[]} args
 * @param {any} request
 * @returns {Command}
 */
function start(program, args, request) {
  const user = request.user === null ? {} : { uid: request.user.uid, gid: request.user.gid };
  if (bun !== undefined) {
    const child = bun.spawn([program, ...args], {
      cwd: request.cwd,
      env: request.env,
      detached: true,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      ...user,
    });
    return {
      // Bun throws a start failure at once (above): a command it returns has started.
      started: Promise.resolve({ pid: child.pid }),
      exited: child.exited.then(() => ({ code: child.exitCode, signal: child.signalCode ?? null })),
      stdout: pipeReader(child.stdout),
      stderr: pipeReader(child.stderr),
    };
  }
  const child = spawn(program, args, {
    cwd: request.cwd,
    env: request.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...user,
  });
  return {
    started: new Promise((resolve) => {
      child.once('spawn', () => resolve({ pid: /** @type {number} */ (child.pid) }));
      child.once('error', (error) => resolve({ error }));
    }),
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    stdout: pipeReader(child.stdout),
    stderr: pipeReader(child.stderr),
  };
}

/**
 * Reads a pipe chunk by chunk, Bun's ReadableStream or Node's Readable alike; `stop` ends a read under way (as if
 * the pipe had closed) for a pipe that a process which left the group may hold open forever.
 * @param {any} pipe
 * @returns {PipeReader}
 */
function pipeReader(pipe) {
  if (typeof pipe.getReader === 'function') {
    const reader = pipe.getReader();
    return { read: () => reader.read(), stop: () => void reader.cancel().catch(() => {}) };
  }
  const chunks = pipe[Symbol.asyncIterator]();
  return { read: () => chunks.next(), stop: () => pipe.destroy() };
}

/**
 * Copies a pipe into a file, keeping at most `limit` bytes of the command's stdout and stderr together, and resolves
 * once the pipe has closed (or was stopped) and the file is written. The file is made when the first byte arrives:
 * most commands write nothing to one of the two, and an open and a close on the thread pool each way would hold up
 * the 'output' report of every action (the executor reads a missing file as empty output).
 * @param {PipeReader} pipe
 * @param {string} path
 * @param {number} limit
 * @param {{ bytes: number, truncated: boolean, writeError: string | null }} budget
 * @param {(bytes: number) => void} wrote told of the bytes kept for this file
 */
async function copyBounded(pipe, path, limit, budget, wrote) {
  /** @type {import('node:fs').WriteStream | null} */
  let file = null;
  // A file that cannot be written (a full disk, its folder gone) must not take the spawner down: the rest of the
  // output is drained and dropped, and the error is reported so the action fails instead of passing with a
  // silently empty stdout.
  let failed = false;
  for (;;) {
    /** @type {Uint8Array} */
    let chunk;
    try {
      const read = await pipe.read();
      if (read.done || read.value === undefined) break;
      chunk = read.value;
    } catch {
      break; // stopped, or the pipe failed: what was read is kept
    }
    const room = limit - budget.bytes;
    if (room <= 0) {
      budget.truncated = true;
      continue;
    }
    const kept = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    if (kept !== chunk) budget.truncated = true;
    budget.bytes += kept.byteLength;
    if (failed) continue;
    wrote(kept.byteLength);
    if (file === null) {
      file = createWriteStream(path, { mode: 0o600 });
      file.once('error', (/** @type {NodeJS.ErrnoException} */ error) => {
        failed = true;
        budget.writeError ??= `${error.code ?? 'EIO'}: ${error.message}`;
      });
    }
    // Backpressure: a command that writes faster than the disk takes it waits on its pipe.
    if (!file.write(kept)) await drained(file);
  }
  const made = file;
  if (made !== null && !failed) await new Promise((resolve) => made.end(resolve));
}

/**
 * Resolves once `file` takes writes again, or has failed.
 * @param {import('node:fs').WriteStream} file
 */
function drained(file) {
  return new Promise((resolve) => {
    const done = () => {
      file.off('drain', done);
      file.off('error', done);
      resolve(undefined);
    };
    file.on('drain', done);
    file.on('error', done);
  });
}

/**
 * Keeps writing this process into `home`'s first file (one is enough: the lock is the same for every hierarchy)
 * every WARM_EVERY_MS until WARM_FOR_MS after the last call. On the main thread, so never between a command's
 * enter and leave: the process is always home when it does.
 * @param {string[]} home
 */
function keepMovesCheap(home) {
  warmUntil = Date.now() + WARM_FOR_MS;
  if (warming !== null) return;
  warming = setInterval(() => {
    if (Date.now() > warmUntil && warming !== null) {
      clearInterval(warming);
      warming = null;
      return;
    }
    try {
      writeFileSync(/** @type {string} */ (home[0]), String(process.pid));
    } catch {
      // only speed is lost
    }
  }, WARM_EVERY_MS);
  warming.unref();
}

/**
 * Puts this process into the cgroups whose `cgroup.procs` (or v1 `tasks`) files are given.
 * @param {string[]} files
 */
function moveSelf(files) {
  for (const file of files) writeFileSync(file, String(process.pid));
}

/**
 * Back to the spawner's own cgroups. Staying in an action's group would get this process killed with the action
 * (and count against its limits), so if that fails the spawner exits: the executor starts a new one.
 * @param {string[]} files
 */
function leaveOrDie(files) {
  try {
    moveSelf(files);
  } catch (error) {
    process.stderr.write(`larder spawner: could not leave an action's cgroup (${error}); restarting\n`);
    process.exit(70);
  }
}

/** @param {object} message */
function send(message) {
  if (process.connected) process.send?.(message);
}
