/**
 * Deletes finished actions' directories on a thread of its own. fs.promises.rm makes a round trip through libuv's
 * thread pool and the event loop for every file and folder: a trivial action's 25 entries took about 12 ms of
 * wall time that way, and they queued in the same four pool threads as the next action's mkdir, links and
 * action-cache write. On its own thread, rmSync takes them in one tight loop (well under a millisecond), and the
 * event loop hears once per directory.
 *
 * One thread, deletions in order: unlinking in one file system mostly queues on the same locks anyway. The thread
 * keeps the process alive only while deletions are pending, and a thread that dies is replaced at the next request,
 * its pending deletions failed.
 */
import { Worker } from 'node:worker_threads';

/** Plain JavaScript for the thread: rmSync per request, the error's message as the answer when it fails. */
const THREAD = `
const { parentPort } = require('node:worker_threads');
const { rmSync } = require('node:fs');
parentPort.on('message', ({ id, path }) => {
  try {
    rmSync(path, { recursive: true, force: true });
    parentPort.postMessage({ id, error: null });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message ? error.message : error) });
  }
});
`;

interface Pending {
  resolve(): void;
  reject(error: Error): void;
}

export class DirectoryRemover {
  #thread: Worker | null = null;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;

  /** Deletes `path` and everything under it; resolves at once if there is nothing there. */
  remove(path: string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the directory remover is closed'));
    const id = this.#nextId++;
    const done = new Promise<void>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    const thread = this.#start();
    thread.ref();
    thread.postMessage({ id, path });
    return done;
  }

  /** Ends the thread; deletions still pending fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const thread = this.#thread;
    this.#thread = null;
    await thread?.terminate();
    this.#failPending(new Error('the directory remover was closed'));
  }

  #start(): Worker {
    if (this.#thread !== null) return this.#thread;
    const thread = new Worker(THREAD, { eval: true });
    thread.on('message', ({ id, error }: { id: number; error: string | null }) => {
      const pending = this.#pending.get(id);
      this.#pending.delete(id);
      if (error === null) pending?.resolve();
      else pending?.reject(new Error(error));
      if (this.#pending.size === 0) thread.unref();
    });
    const lost = (error: Error) => {
      if (this.#thread !== thread) return;
      this.#thread = null;
      this.#failPending(error);
    };
    thread.on('error', lost);
    thread.on('exit', (code) => lost(new Error(`the directory remover's thread exited (${code})`)));
    this.#thread = thread;
    return thread;
  }

  #failPending(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}
