/**
 * Fresh action folders, made ahead. Each action gets a folder of its own (0711, root's: it holds the captured
 * stdout and stderr) with an empty exec root inside (0700, handed to the slot's uid once staged). A mkdir can take
 * a millisecond in the kernel (measured on ext4: ~1 ms per mkdir in one folder tree, ~0.1 ms in another, with
 * strace), so the next folders are made on the file-system thread while actions run, and an action takes one
 * ready: no mkdir on its path. A finished action's folder is deleted and a spare made in its place in one request
 * to the thread (`retire`), so keeping the spares costs no message of its own. When none is ready (a burst), one
 * is made on the spot and the spares are made afresh.
 *
 * A spare folder is empty and only root may write into it; one never used is removed with the actions folder
 * when the worker host next starts.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { type FileSystemOp, type FileSystemThread, throwIfStopped } from './file-system-thread.ts';

export class ActionFolders {
  readonly #spares: string[] = [];
  #making = 0;
  #closed = false;

  /**
   * @param dir the actions folder
   * @param thread where the folders are made
   * @param spares how many are kept ready
   */
  constructor(
    private readonly dir: string,
    private readonly thread: FileSystemThread,
    private readonly spares: number,
  ) {}

  /** A fresh action folder (its exec root is `root` inside it), for the caller alone. */
  async take(): Promise<string> {
    const spare = this.#spares.pop();
    // Retirements top the spares up one for one; only a burst that used them all up makes them here.
    if (this.#spares.length + this.#making === 0) this.#refill();
    return spare ?? (await this.#make());
  }

  /**
   * Deletes a finished action's folder (wherever it was moved: the path is the caller's) and, with the same request
   * to the thread, makes a spare when fewer than the target are ready. Rejects when the folder could not be deleted.
   */
  async retire(path: string): Promise<void> {
    const remove: FileSystemOp = { op: 'remove', path };
    if (this.#closed || this.#spares.length + this.#making >= this.spares) {
      throwIfStopped(await this.thread.apply([remove]));
      return;
    }
    this.#making++;
    const folder = join(this.dir, randomUUID());
    try {
      const applied = await this.thread.apply([remove, ...madeFolder(folder)]);
      throwIfStopped(applied);
      this.#spares.push(folder);
    } finally {
      this.#making--;
    }
  }

  /** Makes no more spares. */
  close(): void {
    this.#closed = true;
  }

  /** Makes the missing spares, all in one request to the thread. */
  #refill(): void {
    const count = this.#closed ? 0 : this.spares - this.#spares.length - this.#making;
    if (count <= 0) return;
    const folders = Array.from({ length: count }, () => join(this.dir, randomUUID()));
    this.#making += count;
    void this.thread
      .apply(folders.flatMap(madeFolder))
      .then(
        ({ stopped }) => {
          // Each folder is two ops; those wholly made before a failure are good spares.
          const made = stopped === null ? count : Math.floor(stopped.index / 2);
          this.#spares.push(...folders.slice(0, made));
        },
        () => undefined, // only speed is lost: the next action makes its own, and reports why if it cannot
      )
      .finally(() => (this.#making -= count));
  }

  async #make(): Promise<string> {
    const folder = join(this.dir, randomUUID());
    throwIfStopped(await this.thread.apply(madeFolder(folder)));
    return folder;
  }
}

/** The ops that make an action folder: 0711 (other slots' uids pass through), its exec root 0700. */
function madeFolder(folder: string): FileSystemOp[] {
  return [
    { op: 'mkdir', path: folder, mode: 0o711 },
    { op: 'mkdir', path: join(folder, 'root'), mode: 0o700 },
  ];
}
