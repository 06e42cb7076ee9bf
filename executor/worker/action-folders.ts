/**
 * Fresh action folders, made ahead. Each action gets a folder of its own (0711, root's: it holds the captured
 * stdout and stderr) with an empty exec root inside (0700, handed to the slot's uid once staged). A mkdir can take
 * a millisecond in the kernel (measured on ext4: ~1 ms per mkdir in one folder tree, ~0.1 ms in another, with
 * strace), so the next folders are made on the file-system thread while actions run, and an action takes one
 * ready: no mkdir on its path. When none is ready (a burst), one is made on the spot.
 *
 * A spare folder is empty and only root may write into it; one never used is removed with the actions folder
 * when the worker host next starts.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { type FileSystemThread, throwIfStopped } from './file-system-thread.ts';

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
    this.#refill();
    return spare ?? (await this.#make());
  }

  /** Makes no more spares. */
  close(): void {
    this.#closed = true;
  }

  #refill(): void {
    while (!this.#closed && this.#spares.length + this.#making < this.spares) {
      this.#making++;
      void this.#make()
        .then(
          (folder) => this.#spares.push(folder),
          () => undefined, // only speed is lost: the next action makes its own, and reports why if it cannot
        )
        .finally(() => this.#making--);
    }
  }

  async #make(): Promise<string> {
    const folder = join(this.dir, randomUUID());
    throwIfStopped(
      await this.thread.apply([
        { op: 'mkdir', path: folder, mode: 0o711 },
        { op: 'mkdir', path: join(folder, 'root'), mode: 0o700 },
      ]),
    );
    return folder;
  }
}
