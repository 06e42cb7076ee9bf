/**
 * The disk store's file I/O: writing an upload into a temp file (synced to stable storage before the caller
 * publishes it), streaming a stored file, and turning file-system errors into LarderErrors whose messages
 * carry no path (the path stays in the cause, for the log).
 */
import { Buffer } from 'node:buffer';
import {
  close,
  closeSync,
  constants,
  fdatasync,
  fstat,
  open as openFd,
  read,
  unlink,
  write,
  writeFile as writeFileAt,
  writeSync,
} from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { LarderError } from '../errors.ts';
import { bodyError } from './streams.ts';
import { SyncAhead } from './sync-ahead.ts';

/** Reads of this size: 1 MiB reads throughout would mean fewer chunks, but Deno then held ~200 MiB streaming a 256 MiB blob out. */
const READ_CHUNK = 256 * 1024;
const WHOLE_READ = 1024 * 1024;

/**
 * Blobs are private to the user larder runs as: actions run as other users, and must not read other tenants'
 * blobs (folders are 0700 too; see disk.ts). The umask can only narrow this.
 */
export const BLOB_MODE = 0o600;

/** Blobs up to this size are written with one synchronous call (see disk.ts SMALL_BLOB). */
const SYNC_WRITE_MAX = 64 * 1024;

/** A new, empty, open temp file: its path, and its descriptor (the taker writes and closes it). */
export interface TempFile {
  path: string;
  fd: number;
}

/** Where writeWholeFile gets its temp file: a fresh name, or a file created ahead (temp-files.ts TempFiles). */
export interface TempFileSource {
  name(): string;
  take(): Promise<TempFile>;
}

/**
 * Writes a blob whose bytes are in memory into a new temp file, synced to stable storage, and resolves to its path;
 * a write that fails leaves no file. On Bun, in one thread-pool task (see ONE_TASK_WRITES). Elsewhere into the file
 * `temps` created ahead (temp-files.ts): small blobs with one synchronous write (a page-cache copy, cheaper than a
 * thread-pool round trip), larger ones on the thread pool; the sync always runs on the thread pool.
 */
export async function writeWholeFile(
  temps: TempFileSource,
  bytes: Uint8Array,
  makeRoom: () => Promise<boolean>,
): Promise<string> {
  if (ONE_TASK_WRITES) {
    const path = temps.name();
    if (!(DIRECT_WRITES && bytes.byteLength >= DIRECT_WRITE_MIN && (await writeWholeFileDirect(path, bytes, makeRoom))))
      await writeWholeFileInOneTask(path, bytes, makeRoom);
    return path;
  }
  const { path, fd } = await temps.take();
  const sync = bytes.byteLength <= SYNC_WRITE_MAX;
  try {
    for (let offset = 0; offset < bytes.byteLength; ) {
      const at = offset;
      try {
        offset += sync
          ? writeSync(fd, bytes, at, bytes.byteLength - at, at)
          : await callback<number>((done) => write(fd, bytes, at, bytes.byteLength - at, at, done));
      } catch (err) {
        if (errno(err) !== 'ENOSPC' || !(await makeRoom())) throw diskError(err, 'write');
      }
    }
    await callback<void>((done) => fdatasync(fd, done)).catch((err) => Promise.reject(diskError(err, 'sync')));
  } catch (err) {
    await callback<void>((done) => unlink(path, done)).catch(() => {});
    throw err;
  } finally {
    // Closing a file already synced has nothing to wait for.
    closeSync(fd);
  }
  return path;
}

/**
 * On Bun, node:fs's writeFile with `flush` creates, writes, fsyncs and closes the file in one task on Bun's thread
 * pool (strace shows all four calls on one pool thread), where writeWholeFile's open, write and fdatasync are a
 * round trip to the pool each. A round trip costs Bun ~60 µs of CPU on a busy core (futex wake-ups, an eventfd
 * write, the event loop's epoll wake-up), more than the write of a small blob itself. Node runs the same writeFile
 * as four pool round trips (open, write, fsync, close), one more than writeWholeFile's; so only Bun takes this path.
 */
const ONE_TASK_WRITES = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined';

/**
 * writeWholeFile in one thread-pool task (ONE_TASK_WRITES): the same file, the same mode, on stable storage when it
 * resolves (fsync, which also syncs what fdatasync leaves out).
 */
function writeWholeFileInOneTask(path: string, bytes: Uint8Array, makeRoom: () => Promise<boolean>): Promise<void> {
  return writeFileInTasks(path, [{ bytes, flag: 'wx', flush: true }], makeRoom);
}

/** One writeFile task's part of a new file: its bytes, the open(2) flags (a string or a number), and whether it syncs. */
interface FilePart {
  bytes: Uint8Array;
  flag: string | number;
  flush: boolean;
}

/**
 * Writes a new file at `path` in one thread-pool task per part, in order, with the blobs' mode. A failed call may
 * leave part of the file, so it is removed; on ENOSPC `makeRoom` is asked and the whole file written again.
 * Failures are disk errors, with the system's error as their cause.
 */
async function writeFileInTasks(path: string, parts: FilePart[], makeRoom: () => Promise<boolean>): Promise<void> {
  for (;;) {
    try {
      for (const { bytes, flag, flush } of parts) await writeFileTask(path, bytes, { flag, mode: BLOB_MODE, flush });
      return;
    } catch (err) {
      await callback<void>((done) => unlink(path, done)).catch(() => {});
      const failed = (err as { syscall?: string }).syscall;
      const action = failed === 'open' ? 'create' : failed === 'fsync' ? 'sync' : 'write';
      if (errno(err) !== 'ENOSPC' || action === 'create' || !(await makeRoom())) throw diskError(err, action);
    }
  }
}

/**
 * On Bun, whole blobs of DIRECT_WRITE_MIN bytes and more are written with O_DIRECT: from the upload's buffer to the
 * disk, without the copy into the page cache. That copy (allocating fresh page-cache pages and filling them) cost
 * more CPU than all the rest of a 1 MiB upload: writing and syncing 1 MiB files took 2.2–2.5 ms of CPU each through
 * the page cache and 0.5–0.6 ms direct (a Bun loop of 200 files a round, ext4 on this VM). The price is paid by the
 * first read of such a blob, which comes from the disk instead of memory.
 * Only Bun: O_DIRECT needs the buffer's address aligned (to the device's logical block, 512 bytes here), and Bun's
 * `Request.arrayBuffer()` buffers were in every upload tried, where Node's concatenated socket chunks are not. A
 * direct write the kernel refuses (EINVAL: a misaligned buffer, a file system without O_DIRECT) is done again
 * through the page cache, so alignment decides the cost, never the outcome.
 */
const DIRECT_WRITES = ONE_TASK_WRITES && typeof constants.O_DIRECT === 'number';
const DIRECT_WRITE_MIN = 256 * 1024;
/** Direct transfers start and end on this boundary (a multiple of every logical block size in use); the rest of a blob, under it, goes through the page cache. */
const DIRECT_ALIGN = 4096;

/**
 * writeWholeFile with O_DIRECT (see DIRECT_WRITES), in one thread-pool task per part (see writeWholeFileInOneTask):
 * the aligned part of the blob direct, synced at once when that is all of it; else the tail (under DIRECT_ALIGN)
 * appended through the page cache, and the whole file synced with it. False when the kernel refused the direct
 * write: nothing is left behind, and the caller writes the blob the usual way.
 */
async function writeWholeFileDirect(
  path: string,
  bytes: Uint8Array,
  makeRoom: () => Promise<boolean>,
): Promise<boolean> {
  const aligned = bytes.subarray(0, bytes.byteLength - (bytes.byteLength % DIRECT_ALIGN));
  const tail = bytes.subarray(aligned.byteLength);
  const parts: FilePart[] = [{ bytes: aligned, flag: DIRECT_CREATE, flush: tail.byteLength === 0 }];
  if (tail.byteLength > 0) parts.push({ bytes: tail, flag: 'a', flush: true });
  try {
    await writeFileInTasks(path, parts, makeRoom);
    return true;
  } catch (err) {
    if (errno((err as Error).cause) === 'EINVAL') return false;
    throw err;
  }
}

const DIRECT_CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_DIRECT ?? 0);

/** node:fs writeFile; its flags may be a number (open(2)'s), which Node and Bun take though the types say string. */
function writeFileTask(
  path: string,
  bytes: Uint8Array,
  options: { flag: string | number; mode: number; flush: boolean },
): Promise<void> {
  return callback<void>((done) => writeFileAt(path, bytes, options as { flag: string }, done));
}

/** A node:fs callback call as a promise, without the FileHandle objects of fs/promises. */
function callback<T>(call: (done: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((err, value) => (err ? reject(err) : resolve(value))));
}

/** Socket chunks (16–64 KiB) are gathered up to this before a write: one thread-pool round trip per MiB, not per chunk. */
const WRITE_BATCH = 1024 * 1024;

/**
 * Writes all of `bytes` into an open file at `position` (null: at its end, for a file opened to append). A write
 * may be short (a nearly full disk takes what fits): the rest follows, at its position, and `wrote(n)` is told of
 * every n bytes that reached the file. On ENOSPC, `makeRoom(done)` (`done`: the bytes of `bytes` written so far)
 * may free space (true), and the write is tried again. File errors become disk errors.
 */
export async function writeAllAt(
  handle: FileHandle,
  bytes: Uint8Array,
  position: number | null,
  makeRoom: (done: number) => Promise<boolean>,
  wrote: (bytes: number) => void = () => {},
): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    try {
      const at = position === null ? null : position + offset;
      const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset, at);
      offset += bytesWritten;
      wrote(bytesWritten);
    } catch (err) {
      if (errno(err) !== 'ENOSPC' || !(await makeRoom(offset))) throw diskError(err, 'write');
    }
  }
}

/**
 * Copies the body into a new file, in writes of about WRITE_BATCH bytes, synced ahead (sync-ahead.ts) and
 * synced whole before it resolves. Body errors pass through as they are; only file errors become disk errors. On ENOSPC,
 * `makeRoom(written)` may free space (true) and the write that failed is retried.
 */
export async function writeFile(
  path: string,
  body: ReadableStream<Uint8Array>,
  makeRoom: (written: number) => Promise<boolean>,
): Promise<number> {
  const handle = await open(path, 'wx', BLOB_MODE).catch((err) => Promise.reject(diskError(err, 'create')));
  const reader = body.getReader();
  const ahead = new SyncAhead(handle);
  // One batch buffer per upload, reused after each write (which is awaited): allocating one per MiB made Deno's
  // resident memory grow by ~200 MiB over a 256 MiB upload, its collector being slow to free large buffers.
  let batch: Buffer | null = null;
  let filled = 0;
  let written = 0;
  const writeOut = async (bytes: Uint8Array) => {
    if (ahead.failure !== null) throw diskError(ahead.failure, 'sync');
    await writeAllAt(handle, bytes, written, (done) => makeRoom(written + done));
    written += bytes.byteLength;
    ahead.wrote(written);
  };
  const flush = async () => {
    if (filled === 0) return;
    await writeOut(batch!.subarray(0, filled));
    filled = 0;
  };
  try {
    for (;;) {
      const { done, value } = await reader.read().catch((err) => Promise.reject(bodyError(err)));
      if (done) break;
      if (value.byteLength >= WRITE_BATCH) {
        // Already large: written as it is, after what was gathered before it.
        await flush();
        await writeOut(value);
        continue;
      }
      if (filled + value.byteLength > WRITE_BATCH) await flush();
      batch ??= Buffer.allocUnsafe(WRITE_BATCH);
      batch.set(value, filled);
      filled += value.byteLength;
    }
    await flush();
    // On stable storage before the caller publishes it (see put).
    await ahead.syncWhole().catch((err) => Promise.reject(diskError(err, 'sync')));
    return written;
  } finally {
    reader.releaseLock();
    await ahead.settled();
    await handle.close();
  }
}

/** Opens a file for reading by descriptor: cheaper than a FileHandle, which costs a transferable object and its own close. */
export function openForReading(path: string): Promise<number> {
  return new Promise((resolve, reject) => openFd(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function fileSize(fd: number): Promise<number> {
  return new Promise((resolve, reject) => fstat(fd, (err, stats) => (err ? reject(err) : resolve(stats.size))));
}

/**
 * Streams `size` bytes of an open file in reads of up to READ_CHUNK; closes the descriptor at the end, on error and on
 * cancel. A byte stream: a BYOB reader has the file read straight into its own buffer (ByteStream Read fills its
 * message buffers that way, no copy); a default reader gets a fresh buffer per read, as from any stream.
 */
export function fileStream(fd: number, size: number): ReadableStream<Uint8Array> {
  let position = 0;
  let closed = false;
  const release = () => {
    if (closed) return;
    closed = true;
    close(fd, () => {});
  };
  return new ReadableStream({
    type: 'bytes',
    async pull(controller) {
      const request = controller.byobRequest;
      try {
        // A blob of up to WHOLE_READ comes in one read (one thread-pool round trip, one chunk); longer ones in READ_CHUNKs.
        const wanted = position === 0 && size <= WHOLE_READ ? size : READ_CHUNK;
        const want = Math.min(request?.view?.byteLength ?? wanted, size - position);
        if (want <= 0) {
          release();
          controller.close();
          request?.respond(0); // a BYOB read waiting for bytes learns of the end
          return;
        }
        const view = request?.view;
        // Not from Buffer's shared pool: enqueueing a chunk hands its whole ArrayBuffer over (detaches it).
        const buffer =
          view == null ? Buffer.allocUnsafeSlow(want) : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
        const bytesRead = await new Promise<number>((resolve, reject) =>
          read(fd, buffer, 0, want, position, (err, n) => (err ? reject(err) : resolve(n))),
        );
        if (bytesRead === 0) throw new LarderError('internal', 'disk: blob shorter than its recorded size');
        position += bytesRead;
        if (request != null) request.respond(bytesRead);
        else controller.enqueue(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
      } catch (err) {
        release();
        controller.error(err);
      }
    },
    cancel: release,
  });
}

export function errno(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

export function diskError(err: unknown, action: string): LarderError {
  const code = errno(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new LarderError('no_space', `disk: ${action} failed, the disk is full`, { cause: err });
  }
  if (code === 'EMFILE' || code === 'ENFILE') {
    // Out of file descriptors: a passing overload (too many connections or open blobs), so worth retrying.
    return new LarderError('unavailable', `disk: ${action} failed, too many open files; retry`, { cause: err });
  }
  // The system's message names the file: it goes to the log (as the cause), never to a client.
  return new LarderError('internal', `disk: ${action} failed: ${code ?? 'unexpected error'}`, { cause: err });
}
