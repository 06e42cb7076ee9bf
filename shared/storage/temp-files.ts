/**
 * The disk store's temp files, in its own tmp/{owner} folder: a fresh name for each upload, or a file created ahead.
 *
 * Creating a file was the slowest step of writing a small blob on this host's ext4: 0.4–1.2 ms for the open(2) that
 * makes the inode, against 0.3–0.8 ms for the fdatasync (Node, 300 writes of 200 bytes, one after another and 5 ms
 * apart); in the executor's action-cache write, which ends every action, the create took 0.9–1.1 ms of 1.7–3.3.
 * So one file is kept created ahead: the next small write only writes, syncs and renames it, and a new one is made
 * on the thread pool while the caller goes on (never on the event loop: on ext4 with a journal a create can wait
 * milliseconds for other uploads' syncs to commit it).
 * It is an empty file with the blobs' mode, named AHEAD_PREFIX… so that it is not taken for an upload's leftover; `close`
 * removes it, and a process killed before that leaves it in its tmp folder, which the next start removes with the
 * folder (disk.ts removeAbandoned).
 */
import { close, fstatSync, open, unlink } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { BLOB_MODE, diskError, type TempFile, type TempFileSource } from './disk-files.ts';

/** How the name of a file created ahead begins. */
export const AHEAD_PREFIX = 'ahead-';

export class TempFiles implements TempFileSource {
  readonly #dir: string;
  /** The file created ahead (null once its creation failed: the taker creates its own then). */
  #ahead: Promise<TempFile | null> | null = null;
  #closed = false;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** A fresh path in the folder, for a writer that creates the file itself. */
  name(prefix = ''): string {
    return join(this.#dir, `${prefix}${randomUUID()}`);
  }

  /**
   * An open, empty file of the folder's: the one created ahead, else one created now. Either way the next is
   * started before this resolves. A creation that fails rejects with a disk error, as an upload's would.
   */
  async take(): Promise<TempFile> {
    const ahead = this.#ahead;
    this.#ahead = this.#closed ? null : this.#create(this.name(AHEAD_PREFIX)).catch(() => null);
    const file = await ahead;
    // One removed by hand since (an emptied tmp folder) could be written, but never renamed into place.
    if (file !== null && fstatSync(file.fd).nlink > 0) return file;
    if (file !== null) close(file.fd, () => {});
    return this.#create(this.name()).catch((err) => Promise.reject(diskError(err, 'create')));
  }

  /** Removes the file created ahead; a take after this creates its file then. */
  async close(): Promise<void> {
    // Let go of it first: a take meanwhile must not be handed the file this removes.
    const ahead = this.#ahead;
    this.#ahead = null;
    this.#closed = true;
    const file = await ahead;
    if (file === null) return;
    await new Promise<void>((resolve) => close(file.fd, () => unlink(file.path, () => resolve())));
  }

  #create(path: string): Promise<TempFile> {
    return new Promise((resolve, reject) =>
      open(path, 'wx', BLOB_MODE, (err, fd) => (err ? reject(err) : resolve({ path, fd }))),
    );
  }
}
