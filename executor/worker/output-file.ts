/**
 * Opening an action's output files, as root, without being led out of the exec root. Node has no openat(2), so
 * a path is opened whole; what makes that safe:
 *
 * - The path is one collect-outputs.ts built itself from the exec root down, through entries it saw to be real
 *   directories (lstat, never a symlink), so it names a file inside the root as long as nothing changes.
 * - Nothing does change: outputs are collected only once no process of the action is left (the runner waits for
 *   the whole action, sandbox and process group, before it returns), and the worker's own code never moves
 *   anything in an exec root. So the checks below cannot be raced by the action itself.
 * - Still, as a second line: O_NOFOLLOW refuses a final component that is a symlink, fstat checks that what was
 *   opened is a regular file, and the kernel's name for the opened file (/proc/self/fd/N) must lie inside the
 *   root, so a directory swapped for a symlink by some leftover process still cannot make us read a file
 *   outside. A hard link to an outside file is the remaining way in; the kernel refuses those for files the
 *   action's user could not read and write anyway (fs.protected_hardlinks, on by default), and the sandbox's
 *   bind mounts refuse them altogether (EXDEV).
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { type FileHandle, open, readlink } from 'node:fs/promises';
import type { Digest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK; // a FIFO must not block us
/** Files up to this size are hashed with synchronous calls (hashSmallFileSync). */
export const SYNC_READ_BYTES = 64 * 1024;
/** Files up to this size are read in one call; larger ones are streamed through the hash. */
const WHOLE_READ_BYTES = 1024 * 1024;

export interface OpenOutput {
  file: FileHandle;
  stats: Stats;
}

export interface HashedFile {
  digest: Digest;
  executable: boolean;
  /** The file's bytes when it was read in one piece, for the caller to keep rather than read it again. */
  bytes: Buffer | null;
}

/**
 * Opens `path` for reading: a regular file inside `realRoot` (the exec root with symlinks resolved), or a
 * LarderError 'invalid_argument' naming `rel`. The caller closes the handle.
 */
export async function openOutputFile(path: string, realRoot: string, rel: string): Promise<OpenOutput> {
  const file = await open(path, OPEN_FLAGS).catch((err: NodeJS.ErrnoException) => refuseLink(err, rel));
  try {
    const stats = await file.stat();
    checkOpened(stats, await readlink(`/proc/self/fd/${file.fd}`), realRoot, rel);
    return { file, stats };
  } catch (err) {
    await file.close();
    throw err;
  }
}

/**
 * Hashes a small output file with synchronous calls, or returns null when it is larger than SYNC_READ_BYTES
 * (hash it with hashLargeFile). Outputs were just written and sit in the page cache, so each call takes
 * microseconds, where a thread-pool round trip per call made 100,000 outputs take several times as long; callers
 * yield to the event loop every few dozen files.
 */
export function hashSmallFileSync(path: string, realRoot: string, rel: string): HashedFile | null {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (err) {
    refuseLink(err as NodeJS.ErrnoException, rel);
  }
  try {
    const stats = fstatSync(fd);
    checkOpened(stats, readlinkSync(`/proc/self/fd/${fd}`), realRoot, rel);
    if (stats.size > SYNC_READ_BYTES) return null;
    const bytes = Buffer.allocUnsafe(stats.size);
    let at = 0;
    while (at < stats.size) {
      const read = readSync(fd, bytes, at, stats.size - at, at);
      if (read === 0) break;
      at += read;
    }
    const whole = at === stats.size ? bytes : bytes.subarray(0, at);
    const digest = { hash: createHash('sha256').update(whole).digest('hex'), sizeBytes: whole.byteLength };
    return { digest, executable: isExecutable(stats), bytes: whole };
  } finally {
    closeSync(fd);
  }
}

/** Hashes an output file of any size, streamed when it is large. */
export async function hashLargeFile(path: string, realRoot: string, rel: string): Promise<HashedFile> {
  const { file, stats } = await openOutputFile(path, realRoot, rel);
  try {
    const { digest, bytes } = await hashOpenFile(file, stats.size);
    return { digest, executable: isExecutable(stats), bytes };
  } finally {
    await file.close();
  }
}

/**
 * SHA-256 and size of an open file's bytes, from its start, and the bytes themselves when the file was small
 * enough to be read in one piece.
 */
async function hashOpenFile(file: FileHandle, size: number): Promise<{ digest: Digest; bytes: Buffer | null }> {
  const hash = createHash('sha256');
  if (size <= WHOLE_READ_BYTES) {
    const bytes = await readWhole(file, size);
    return { digest: { hash: hash.update(bytes).digest('hex'), sizeBytes: bytes.byteLength }, bytes };
  }
  let read = 0;
  for await (const chunk of file.createReadStream({ start: 0, autoClose: false })) {
    hash.update(chunk as Buffer);
    read += (chunk as Buffer).byteLength;
  }
  return { digest: { hash: hash.digest('hex'), sizeBytes: read }, bytes: null };
}

/** What was opened must be a regular file, and the kernel's name for it must lie inside the root. */
function checkOpened(stats: Stats, opened: string, realRoot: string, rel: string): void {
  if (!stats.isFile()) notAnOutput(rel);
  if (!inside(realRoot, opened))
    throw new LarderError('invalid_argument', `output "${rel}" resolves outside the input root`);
}

/** ELOOP from O_NOFOLLOW: the last component is a symlink now, though it was a file when listed. */
function refuseLink(err: NodeJS.ErrnoException, rel: string): never {
  if (err.code === 'ELOOP') notAnOutput(rel);
  throw err;
}

function isExecutable(stats: Stats): boolean {
  return (stats.mode & 0o111) !== 0;
}

/**
 * The first `size` bytes of an open file, from its start: what it held when it was hashed. A file that has
 * since shrunk comes back short, and the CAS refuses it for its digest.
 */
export async function readWhole(file: FileHandle, size: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  while (at < size) {
    const { bytesRead } = await file.read(bytes, at, size - at, at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return at === size ? bytes : bytes.subarray(0, at);
}

export function notAnOutput(rel: string): never {
  throw new LarderError('invalid_argument', `output "${rel}" is neither a regular file, a directory nor a symlink`);
}

export function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);
}
