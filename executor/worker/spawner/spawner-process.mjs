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
 *   ← { type: 'run', id, argv, cwd, env, user, stdoutPath, stderrPath, maxOutputBytes }
 *   → { type: 'started', id, pid } | { type: 'error', id, code, message }
 *   → { type: 'exit', id, code, signal }            the command's leader exited (its group may live on)
 *   → { type: 'output', id, truncated }             both pipes are closed and the files written
 *   ← { type: 'abandon', id }                       stop waiting for the pipes (a process left the group)
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/** @type {Map<number, import('node:child_process').ChildProcess>} */
const running = new Map();

process.on('message', (/** @type {any} */ message) => {
  if (message.type === 'run') run(message);
  else if (message.type === 'abandon') {
    const child = running.get(message.id);
    child?.stdout?.destroy();
    child?.stderr?.destroy();
  }
});
// The executor is gone: nothing more will be asked, and nobody would read the answers.
process.on('disconnect', () => process.exit(0));

/** @param {any} request */
function run(request) {
  const [program, ...args] = request.argv;
  const child = spawn(program, args, {
    cwd: request.cwd,
    env: request.env,
    detached: true, // setsid(): the command leads a process group of its own
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(request.user === null ? {} : { uid: request.user.uid, gid: request.user.gid }),
  });
  running.set(request.id, child);
  const budget = { bytes: 0, truncated: false };
  let open = 2;
  const closed = () => {
    if (--open > 0) return;
    running.delete(request.id);
    send({ type: 'output', id: request.id, truncated: budget.truncated });
  };
  copyBounded(child.stdout, request.stdoutPath, request.maxOutputBytes, budget, closed);
  copyBounded(child.stderr, request.stderrPath, request.maxOutputBytes, budget, closed);
  child.once('spawn', () => send({ type: 'started', id: request.id, pid: child.pid }));
  child.once('error', (/** @type {NodeJS.ErrnoException} */ error) =>
    send({ type: 'error', id: request.id, code: error.code ?? '', message: error.message }),
  );
  child.once('exit', (code, signal) => send({ type: 'exit', id: request.id, code, signal }));
}

/**
 * Copies a pipe into a file, keeping at most `limit` bytes of the command's stdout and stderr together.
 * @param {import('node:stream').Readable} source
 * @param {string} path
 * @param {number} limit
 * @param {{ bytes: number, truncated: boolean }} budget
 * @param {() => void} done
 */
function copyBounded(source, path, limit, budget, done) {
  const file = createWriteStream(path, { mode: 0o600 });
  // A file that cannot be written (its folder is gone) must not take the spawner down: the output is dropped.
  let failed = false;
  file.once('error', () => {
    failed = true;
    source.resume();
  });
  source.on('data', (/** @type {Buffer} */ chunk) => {
    const room = limit - budget.bytes;
    if (room <= 0) {
      budget.truncated = true;
      return;
    }
    const kept = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    if (kept !== chunk) budget.truncated = true;
    budget.bytes += kept.byteLength;
    // Backpressure: a command that writes faster than the disk takes it waits on its pipe.
    if (!failed && !file.write(kept)) {
      source.pause();
      file.once('drain', () => source.resume());
    }
  });
  source.once('close', () => (failed ? done() : file.end(() => done())));
}

/** @param {object} message */
function send(message) {
  if (process.connected) process.send?.(message);
}
