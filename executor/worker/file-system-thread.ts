/**
 * Many small file-system calls in one request, made synchronously on a thread of its own. Every fs.promises call
 * is a round trip through libuv's thread pool and back to the event loop, and on a small host the hand-offs cost
 * far more than the calls: a trivial action's 25-entry folder took about 12 ms of wall time to delete that way,
 * its 20 input links and its folders were the executor's most expensive calls in a CPU profile, and they all
 * queued in the same four pool threads as the next action's work. Here a request is one message each way.
 *
 * `apply(ops)` makes folders, symlinks and hard links, changes owners and deletes trees, in order (stage-inputs.ts,
 * run-action.ts, action-folders.ts). Any of these that fails stops the batch (what follows may be inside it), except
 * a link: that failure is reported and the rest go on, for the caller to make that file another way. A worker host
 * keeps two threads, one for staging and one for deletions, so that a deletion sleeping in the kernel never holds
 * up staging.
 *
 * A small batch of cheap calls with nothing pending before it is applied at once on the calling thread instead: a
 * round trip to an idle thread cost 0.6 ms (p50) of a trivial action's staging on a 2-core host, where its three
 * calls cost 0.1 ms. Cheap are links, symlinks and owner changes (13–30 µs each there), and the mkdir of a folder
 * that is usually there already (recursive: the exec root, made ahead). Making a new folder took 20 µs in a fresh
 * folder there but 0.4–1.4 ms in one under a much-churned /tmp (ext4's inode allocator searching its bitmaps), and a
 * deletion may walk a whole tree: those always go to the thread.
 *
 * Requests are served in order. The thread keeps the process alive only while requests are pending; a thread
 * that dies is replaced at the next request, its pending ones failed.
 */
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';

export type FileSystemOp =
  | { op: 'mkdir'; path: string; recursive?: boolean; mode?: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'link'; from: string; path: string }
  /** Deletes a tree (rmSync; nothing there is no failure). */
  | { op: 'remove'; path: string };

export interface AppliedOps {
  /** The op (not a link) that failed, with the ops after it not tried; null when none did. */
  stopped: { index: number; code: string; message: string } | null;
  /** Links that failed, by index in the batch, with their error code. */
  failedLinks: Array<{ index: number; code: string }>;
}

/** Throws the failure that stopped a batch, as a file-system error (with its `code`); returns if none did. */
export function throwIfStopped({ stopped }: AppliedOps): void {
  if (stopped !== null) throw Object.assign(new Error(stopped.message), { code: stopped.code });
}

/** The file-system calls applyOps makes, passed in so that its source runs as it is on the thread too. */
type FileSystemCalls = Pick<typeof fs, 'chownSync' | 'linkSync' | 'mkdirSync' | 'rmSync' | 'symlinkSync'>;

/**
 * Applies `ops` in order with `calls` (see AppliedOps). The thread runs this function's own source (THREAD), so it
 * refers to nothing outside its parameters and declares no function inside (a loader would name those with a helper
 * the thread does not have).
 */
function applyOps(ops: readonly FileSystemOp[], calls: FileSystemCalls): AppliedOps {
  const failedLinks: AppliedOps['failedLinks'] = [];
  for (let index = 0; index < ops.length; index++) {
    const op = ops[index]!;
    try {
      if (op.op === 'link') calls.linkSync(op.from, op.path);
      else if (op.op === 'mkdir') calls.mkdirSync(op.path, { recursive: op.recursive === true, mode: op.mode });
      else if (op.op === 'chown') calls.chownSync(op.path, op.uid, op.gid);
      else if (op.op === 'remove') calls.rmSync(op.path, { recursive: true, force: true });
      else calls.symlinkSync(op.target, op.path);
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException;
      if (op.op === 'link') failedLinks.push({ index, code: String(code) });
      else return { stopped: { index, code: String(code), message: String(message) }, failedLinks };
    }
  }
  return { stopped: null, failedLinks };
}

/** Plain JavaScript for the thread: applyOps, with node:fs. */
const THREAD = `
const { parentPort } = require('node:worker_threads');
const calls = require('node:fs');
const applyOps = ${applyOps.toString()};
parentPort.on('message', ({ id, ops }) => {
  try {
    parentPort.postMessage({ id, error: null, applied: applyOps(ops, calls) });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message ? error.message : error), applied: null });
  }
});
`;

/** Ops a batch may have to be applied on the calling thread (FileSystemThread's default): 0.3–0.5 ms of links. */
export const INLINE_OPS = 32;

/** Whether `op` is cheap enough for the calling thread (see the top of the file). */
function cheap(op: FileSystemOp): boolean {
  return op.op === 'mkdir' ? op.recursive === true : op.op !== 'remove';
}

interface Pending {
  resolve(applied: AppliedOps): void;
  reject(error: Error): void;
}

export class FileSystemThread {
  #thread: Worker | null = null;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;
  #sentToThread = 0;

  /** @param inlineOps the most ops a batch applied on the calling thread may have (0: every batch goes to the thread). */
  constructor(private readonly inlineOps = INLINE_OPS) {}

  /** Applies `ops` in order (see AppliedOps for what a failure does). */
  apply(ops: readonly FileSystemOp[]): Promise<AppliedOps> {
    if (this.#closed) return Promise.reject(new Error('the file-system thread is closed'));
    // Only with nothing pending: a batch applied here must not overtake one sent before it.
    if (ops.length <= this.inlineOps && this.#pending.size === 0 && ops.every(cheap))
      return Promise.resolve(applyOps(ops, fs));
    const id = this.#nextId++;
    this.#sentToThread++;
    const done = new Promise<AppliedOps>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    const thread = this.#start();
    thread.ref();
    thread.postMessage({ id, ops });
    return done;
  }

  /** How many batches went to the thread, not applied on the calling thread (what tests look at). */
  get sentToThread(): number {
    return this.#sentToThread;
  }

  /** Ends the thread; requests still pending fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const thread = this.#thread;
    this.#thread = null;
    await thread?.terminate();
    this.#failPending(new Error('the file-system thread was closed'));
  }

  #start(): Worker {
    if (this.#thread !== null) return this.#thread;
    const thread = new Worker(THREAD, { eval: true });
    thread.on('message', ({ id, error, applied }: { id: number; error: string | null; applied: AppliedOps }) => {
      const pending = this.#pending.get(id);
      this.#pending.delete(id);
      if (error === null) pending?.resolve(applied);
      else pending?.reject(new Error(error));
      if (this.#pending.size === 0) thread.unref();
    });
    const lost = (error: Error) => {
      if (this.#thread !== thread) return;
      this.#thread = null;
      this.#failPending(error);
    };
    thread.on('error', lost);
    thread.on('exit', (code) => lost(new Error(`the file-system thread exited (${code})`)));
    this.#thread = thread;
    return thread;
  }

  #failPending(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}
