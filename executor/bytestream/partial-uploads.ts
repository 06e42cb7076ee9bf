/**
 * Keeps the bytes of interrupted ByteStream uploads so a client can resume them: QueryWriteStatus reports
 * how much was kept, and a Write with that write_offset continues where the last one stopped.
 *
 * One file per upload resource name in a folder of its own (emptied at start-up; partials do not outlive
 * the process). Bounded three ways, so clients that give up cannot fill the disk: total bytes, number of
 * uploads kept, and an idle time after which a partial is dropped. An upload that does not fit the
 * budget simply is not kept (the client then starts over, which the protocol allows). Small uploads are
 * never kept: resending them costs less than writing them twice.
 */
import { createHash, type Hash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LarderError } from '../../shared/errors.ts';
import { ownerAlive, ownerTag } from '../../shared/storage/owner.ts';
import { diskError, writeAllAt } from '../../shared/storage/disk-files.ts';
import { SyncAhead } from '../../shared/storage/sync-ahead.ts';

export interface PartialUploadsOptions {
  /**
   * A folder that holds one private folder per server process (several executors may share a disk
   * store). Private folders of processes that are gone are removed at start-up.
   */
  parentDir: string;
  /** Total bytes kept across partial uploads. */
  maxBytes: number;
  /** Number of partial uploads kept at once. */
  maxUploads: number;
  /** A partial not resumed within this time is dropped. */
  idleMs: number;
  /** Uploads smaller than this are not kept. */
  minBlobBytes: number;
  /** Injected clock, for tests. */
  now?: () => number;
}

interface Partial {
  path: string;
  bytes: number;
  /** Set while a Write owns it; idle partials have `active` false and count down from `idleSince`. */
  active: boolean;
  idleSince: number;
  /** SHA-256 of the bytes so far, once a Write pinned it (the store adopts the file, so nobody else hashes). */
  hash: Hash | null;
}

/** What one Write attempt records into: `append` each chunk, then `keep` (interrupted) or `discard` (done or invalid). */
export interface Recorder {
  /** Bytes recorded before this attempt, readable with `readKept`. */
  readonly resumedFrom: number;
  append(chunk: Uint8Array): Promise<void>;
  readKept(): ReadableStream<Uint8Array>;
  keep(): Promise<void>;
  discard(): Promise<void>;
  /**
   * For a Write whose bytes go nowhere but this file (the store will adopt it): hash them, and go on
   * recording past the budget instead of stopping (such an upload is then not kept if interrupted). When the
   * file system fills up, `makeRoom(written)` is asked once to free room for the rest of the blob (`written`: the
   * bytes in the file so far) and the write is tried again if it did.
   */
  pin(makeRoom?: (written: number) => Promise<boolean>): Promise<void>;
  /** Ends recording and hands the file over, synced, with its size and SHA-256; the caller removes or moves it. */
  complete(): Promise<{ path: string; bytes: number; sha256: string }>;
}

export class PartialUploads {
  readonly #options: PartialUploadsOptions;
  readonly #dir: string;
  readonly #now: () => number;
  readonly #partials = new Map<string, Partial>();
  #bytes = 0;

  private constructor(options: PartialUploadsOptions, dir: string) {
    this.#options = options;
    this.#dir = dir;
    this.#now = options.now ?? Date.now;
  }

  static async open(options: PartialUploadsOptions): Promise<PartialUploads> {
    await mkdir(options.parentDir, { recursive: true });
    const cutoff = (options.now ?? Date.now)() - options.idleMs;
    for (const name of await readdir(options.parentDir)) {
      const path = join(options.parentDir, name);
      // A folder names its owner (shared/storage/owner.ts): one whose owner is gone goes at once, one whose
      // owner still runs stays (that process expires its own partials). Older, unnamed ones go when idle.
      const owner = /^w-(p\d+-(?:\d+|x))-/.exec(name)?.[1];
      const abandoned = owner !== undefined ? !ownerAlive(owner) : (await lastWrite(path)) < cutoff;
      if (abandoned) await rm(path, { recursive: true, force: true });
    }
    return new PartialUploads(options, await mkdtemp(join(options.parentDir, `w-${ownerTag()}-`)));
  }

  /** Bytes kept for an upload name: what QueryWriteStatus reports as committed. */
  committed(name: string): number {
    this.#expire();
    return this.#partials.get(name)?.bytes ?? 0;
  }

  isActive(name: string): boolean {
    return this.#partials.get(name)?.active ?? false;
  }

  /**
   * Waits (up to `timeoutMs`) for a Write that still owns `name` to let go. A client that lost its stream
   * asks QueryWriteStatus and resumes at once; the server may not have seen the old stream's end yet.
   */
  async settle(name: string, timeoutMs: number): Promise<boolean> {
    const deadline = this.#now() + timeoutMs;
    while (this.isActive(name)) {
      if (this.#now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  /**
   * Starts a Write attempt. `offset` is the client's write_offset: 0 starts afresh (dropping what was
   * kept), anything else must equal the kept size. Returns null when the upload is not worth keeping or
   * does not fit; the Write then goes on unrecorded.
   */
  async begin(name: string, blobBytes: number, offset: number): Promise<Recorder | null> {
    this.#expire();
    const existing = this.#partials.get(name);
    if (offset === 0 && existing !== undefined) await this.#drop(name);
    if (offset > 0) return existing === undefined ? null : this.#recorder(name, existing);
    if (blobBytes < this.#options.minBlobBytes || blobBytes > this.#options.maxBytes) return null;
    if (this.#partials.size >= this.#options.maxUploads && !(await this.#dropOldestIdle())) return null;
    // Recreated if a sibling process swept it away as stale while this server was idle.
    await mkdir(this.#dir, { recursive: true });
    const partial: Partial = {
      path: join(this.#dir, fileName(name)),
      bytes: 0,
      active: true,
      idleSince: 0,
      hash: null,
    };
    this.#partials.set(name, partial);
    return this.#recorder(name, partial);
  }

  async close(): Promise<void> {
    await rm(this.#dir, { recursive: true, force: true });
    this.#partials.clear();
    this.#bytes = 0;
  }

  async #recorder(name: string, partial: Partial): Promise<Recorder | null> {
    let handle: FileHandle | null = await open(partial.path, 'a').catch(() => null);
    if (handle === null) {
      await this.#drop(name);
      return null;
    }
    partial.active = true;
    const ahead = new SyncAhead(handle);
    const resumedFrom = partial.bytes;
    let recording = true;
    let pinned = false;
    let makeRoom: ((written: number) => Promise<boolean>) | undefined;
    let overBudget = false;
    /**
     * Writes all of `chunk` at the file's end, counting every byte that reached it, so the file and `partial.bytes`
     * always agree even when a full disk stops a write halfway. Room is asked for at most once per chunk.
     */
    const writeAll = (chunk: Uint8Array) => {
      let roomAsked = false;
      const askRoom = async () => {
        if (roomAsked || makeRoom === undefined) return false;
        roomAsked = true;
        return makeRoom(partial.bytes);
      };
      return writeAllAt(handle!, chunk, null, askRoom, (bytes) => {
        partial.bytes += bytes;
        this.#bytes += bytes;
      });
    };
    const stopRecording = async () => {
      recording = false;
      await ahead.settled();
      await handle?.close().catch(() => {});
      handle = null;
    };
    return {
      resumedFrom,
      append: async (chunk) => {
        if (!recording) return;
        if (this.#bytes + chunk.byteLength > this.#options.maxBytes) {
          overBudget = true;
          if (!pinned) {
            // Over budget: this upload can no longer be resumed, but it still completes normally.
            await stopRecording();
            await this.#drop(name);
            return;
          }
        }
        // Hashed while the thread pool writes: the two overlap instead of taking turns.
        const written = writeAll(chunk);
        partial.hash?.update(chunk);
        try {
          await written;
        } catch (err) {
          partial.hash = null; // it has bytes the file may not: a resumed Write hashes the file again (pin)
          throw err;
        }
        // Only a pinned recording is synced at the end (complete), so only it is synced ahead.
        if (pinned) ahead.wrote(partial.bytes);
      },
      readKept: () => fileSlice(partial.path, resumedFrom),
      keep: async () => {
        await stopRecording();
        if (this.#partials.get(name) !== partial) return;
        if (overBudget) return this.#drop(name);
        partial.active = false;
        partial.idleSince = this.#now();
      },
      pin: async (onFullDisk) => {
        pinned = true;
        makeRoom = onFullDisk;
        if (partial.hash !== null) return;
        // Kept by an attempt that did not hash (none does today, but a resumed partial may predate a pin).
        partial.hash = createHash('sha256');
        for await (const chunk of fileSlice(partial.path, partial.bytes)) partial.hash.update(chunk);
      },
      complete: async () => {
        if (!recording || partial.hash === null)
          throw new LarderError('internal', 'partial upload: complete() without a pinned recording');
        await ahead.syncWhole().catch((err) => Promise.reject(diskError(err, 'sync')));
        await stopRecording();
        // A new Write of the same name may start at once: it must not append to the file being handed over.
        const path = `${partial.path}.${randomUUID()}`;
        await rename(partial.path, path);
        this.#partials.delete(name);
        this.#bytes -= partial.bytes;
        return { path, bytes: partial.bytes, sha256: partial.hash.digest('hex') };
      },
      discard: async () => {
        await stopRecording();
        if (this.#partials.get(name) === partial) await this.#drop(name);
      },
    };
  }

  #expire(): void {
    const cutoff = this.#now() - this.#options.idleMs;
    for (const [name, partial] of this.#partials) {
      if (!partial.active && partial.idleSince <= cutoff) void this.#drop(name);
    }
  }

  async #dropOldestIdle(): Promise<boolean> {
    let oldest: [string, Partial] | undefined;
    for (const entry of this.#partials) {
      if (!entry[1].active && (oldest === undefined || entry[1].idleSince < oldest[1].idleSince)) oldest = entry;
    }
    if (oldest === undefined) return false;
    await this.#drop(oldest[0]);
    return true;
  }

  async #drop(name: string): Promise<void> {
    const partial = this.#partials.get(name);
    if (partial === undefined) return;
    this.#partials.delete(name);
    this.#bytes -= partial.bytes;
    await rm(partial.path, { force: true });
  }
}

/** When anything in a folder was last written (appends touch the files, not the folder). */
async function lastWrite(dir: string): Promise<number> {
  const info = await stat(dir).catch(() => null);
  if (info === null) return Infinity;
  let latest = info.mtimeMs;
  for (const name of await readdir(dir).catch(() => [])) {
    const file = await stat(join(dir, name)).catch(() => null);
    if (file !== null) latest = Math.max(latest, file.mtimeMs);
  }
  return latest;
}

/** Upload names are client-chosen text: hash them into a safe file name. */
function fileName(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

/** The first `length` bytes of a file, streamed in bounded chunks. */
export function fileSlice(path: string, length: number): ReadableStream<Uint8Array> {
  let handle: FileHandle | null = null;
  let position = 0;
  const close = async () => {
    await handle?.close().catch(() => {});
    handle = null;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        handle ??= await open(path, 'r');
        const want = Math.min(256 * 1024, length - position);
        if (want <= 0) {
          await close();
          controller.close();
          return;
        }
        const buffer = Buffer.allocUnsafe(want);
        const { bytesRead } = await handle.read(buffer, 0, want, position);
        if (bytesRead === 0) throw new Error('partial upload file is shorter than recorded');
        position += bytesRead;
        controller.enqueue(buffer.subarray(0, bytesRead));
      } catch (err) {
        await close();
        // Not the client's doing, so not 'aborted': the Write then drops the partial instead of keeping it.
        controller.error(
          new LarderError('internal', `partial upload unreadable: ${(err as Error).message}`, { cause: err }),
        );
      }
    },
    cancel: close,
  });
}
