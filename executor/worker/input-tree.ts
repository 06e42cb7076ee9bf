/**
 * Reads an action's input root and measures it before anything is staged. Every distinct Directory is fetched
 * once and checked (names, digests); then the tree is counted as staging would lay it out, where a Directory
 * named in two places counts twice, because it is staged twice. A tree past the configured limits is refused
 * with 'invalid_argument' naming the limit: a client cannot make this worker create a million links from
 * sixty kilobytes of protos. Blobs the CAS lacks are reported all at once (MissingBlobsError).
 *
 * Memory stays within the limits while reading: what is held is every distinct Directory, and the distinct
 * entries are a lower bound of the staged counts, so reading stops as soon as they alone pass a limit.
 */
import { fromBinary } from '@bufbuild/protobuf';
import { join } from 'node:path';
import { type Digest, formatDigest, parseDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import {
  type Directory,
  DirectorySchema,
  type Digest as DigestMessage,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { MissingBlobsError } from '../reapi/missing-blobs.ts';
import { abortable } from '../../shared/abortable.ts';
import type { WorkerCas } from './cas.ts';

/** How much one action's input root may stage; flags --max-input-files, --max-input-dirs, --max-input-bytes. */
export interface InputLimits {
  /** Files and symlinks, each counted at every place it is staged. */
  maxFiles: number;
  /** Directories, the input root included. */
  maxDirectories: number;
  /** Bytes of all staged files (a file staged twice counts twice). */
  maxBytes: number;
}

export interface InputCounts {
  files: number;
  directories: number;
  bytes: number;
}

export interface Entry {
  kind: 'file' | 'directory' | 'symlink';
  digest?: Digest;
  executable?: boolean;
  target?: string;
}

/** A Directory checked once: its entries by name, digests parsed. */
export interface Checked {
  entries: Map<string, Entry>;
}

export interface InputTree {
  root: Digest;
  /** Every distinct Directory of the tree, by `formatDigest(digest)`. */
  directories: Map<string, Checked>;
  /** What staging the tree will create. */
  counts: InputCounts;
}

/** Directory protos are read whole; real ones are kilobytes. */
const MAX_DIRECTORY_BYTES = 4 * 1024 * 1024;
/** Directory levels below the input root; deeper paths would not fit PATH_MAX anyway. */
export const MAX_DEPTH = 1000;
/** What one name and one symlink target may be on Linux (NAME_MAX, PATH_MAX): longer ones cannot be staged. */
const MAX_NAME_BYTES = 255;
const MAX_TARGET_BYTES = 4095;
const READ_CONCURRENCY = 16;
/** Directories read before the counts are looked at again. */
const READ_BATCH = 256;

export async function readInputTree(
  cas: WorkerCas,
  root: Digest,
  limits: InputLimits,
  signal?: AbortSignal,
): Promise<InputTree> {
  const directories = new Map<string, Checked>();
  const missing: Digest[] = [];
  const files = new Map<string, Digest>();
  const seen = new Set([formatDigest(root)]);
  // Lower bounds of the staged counts: every distinct Directory and entry, once.
  const distinct: InputCounts = { files: 0, directories: 1, bytes: 0 };
  let level: Array<{ digest: Digest; path: string }> = [{ digest: root, path: '' }];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > MAX_DEPTH) tooDeep();
    const next: typeof level = [];
    for (let at = 0; at < level.length; at += READ_BATCH) {
      signal?.throwIfAborted();
      const batch = level.slice(at, at + READ_BATCH);
      const read = await abortable(
        mapLimit(batch, READ_CONCURRENCY, ({ digest }) => readDirectory(cas, digest)),
        signal,
      );
      batch.forEach(({ digest, path }, i) => {
        const directory = read[i];
        if (directory === null || directory === undefined) {
          missing.push(digest);
          return;
        }
        const checked = checkDirectory(directory, digest, path);
        directories.set(formatDigest(digest), checked);
        for (const [name, entry] of checked.entries) {
          if (entry.kind !== 'directory') distinct.files++;
          if (entry.kind === 'file') {
            distinct.bytes += entry.digest!.sizeBytes;
            if (entry.digest!.sizeBytes > 0) files.set(formatDigest(entry.digest!), entry.digest!);
          }
          if (entry.kind === 'directory' && !seen.has(formatDigest(entry.digest!))) {
            seen.add(formatDigest(entry.digest!));
            distinct.directories++;
            next.push({ digest: entry.digest!, path: join(path, name) });
          }
        }
        checkLimits(distinct, limits, 'at least ');
      });
    }
    level = next;
  }
  // Missing Directories count as empty here: a tree already too large is refused whatever it lacks.
  const counts = measure(directories, root, limits);
  signal?.throwIfAborted();
  missing.push(...(await abortable(cas.findMissing([...files.values()]), signal)));
  if (missing.length > 0) throw new MissingBlobsError(missing);
  return { root, directories, counts };
}

async function readDirectory(cas: WorkerCas, digest: Digest): Promise<Directory | null> {
  if (digest.sizeBytes > MAX_DIRECTORY_BYTES) {
    throw new LarderError(
      'invalid_argument',
      `input Directory ${formatDigest(digest)} is over the ${MAX_DIRECTORY_BYTES}-byte limit`,
    );
  }
  const bytes = await cas.readBytes(digest, MAX_DIRECTORY_BYTES);
  if (bytes === null) return null;
  try {
    return fromBinary(DirectorySchema, bytes);
  } catch (err) {
    throw new LarderError(
      'invalid_argument',
      `input Directory ${formatDigest(digest)} is not a valid Directory protobuf: ${(err as Error).message}`,
    );
  }
}

/** Checks names (one component each, unique across files, directories and symlinks) and digests. */
function checkDirectory(directory: Directory, digest: Digest, path: string): Checked {
  const where = path === '' ? `the input root (${formatDigest(digest)})` : `input directory "${path}"`;
  const entries = new Map<string, Entry>();
  const add = (name: string, entry: Entry) => {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new LarderError('invalid_argument', `${where} has an entry with an invalid name ${JSON.stringify(name)}`);
    }
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw new LarderError('invalid_argument', `${where} has an entry name longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (entries.has(name))
      throw new LarderError('invalid_argument', `${where} has two entries named ${JSON.stringify(name)}`);
    entries.set(name, entry);
  };
  const digestOf = (message: DigestMessage | undefined, name: string): Digest => {
    if (message === undefined) throw new LarderError('invalid_argument', `input "${join(path, name)}" has no digest`);
    try {
      return parseDigest(message.hash, message.sizeBytes);
    } catch (err) {
      throw (err as LarderError).wrap(`input "${join(path, name)}"`);
    }
  };
  for (const file of directory.files)
    add(file.name, { kind: 'file', digest: digestOf(file.digest, file.name), executable: file.isExecutable });
  for (const dir of directory.directories) add(dir.name, { kind: 'directory', digest: digestOf(dir.digest, dir.name) });
  for (const link of directory.symlinks) {
    if (link.target === '' || link.target.includes('\0') || Buffer.byteLength(link.target) > MAX_TARGET_BYTES) {
      throw new LarderError(
        'invalid_argument',
        `input symlink "${join(path, link.name)}" has an invalid target ${JSON.stringify(link.target.slice(0, 100))}`,
      );
    }
    add(link.name, { kind: 'symlink', target: link.target });
  }
  return { entries };
}

/**
 * The tree's counts as staged, each Directory's own measured once and added wherever it appears. Refuses a
 * tree past a limit, or nested deeper than paths can be (which also bounds the recursion of later walks).
 * A subtree's partial sums are checked as they grow, so an oversized tree is refused without being counted
 * through; the root's total is checked whole, so the message gives the exact count.
 */
function measure(directories: Map<string, Checked>, root: Digest, limits: InputLimits): InputCounts {
  const memo = new Map<string, InputCounts & { height: number }>();
  const walk = (key: string, depth: number): InputCounts & { height: number } => {
    const known = memo.get(key);
    if (known !== undefined) {
      if (depth + known.height > MAX_DEPTH) tooDeep();
      return known;
    }
    if (depth > MAX_DEPTH) tooDeep();
    const size = { files: 0, directories: 1, bytes: 0, height: 0 };
    for (const entry of directories.get(key)?.entries.values() ?? []) {
      if (entry.kind === 'directory') {
        const child = walk(formatDigest(entry.digest!), depth + 1);
        size.files += child.files;
        size.directories += child.directories;
        size.bytes += child.bytes;
        size.height = Math.max(size.height, child.height + 1);
      } else {
        size.files++;
        if (entry.kind === 'file') size.bytes += entry.digest!.sizeBytes;
      }
      if (depth > 0) checkLimits(size, limits, 'at least ');
    }
    memo.set(key, size);
    return size;
  };
  const { height: _, ...counts } = walk(formatDigest(root), 0);
  checkLimits(counts, limits, '');
  return counts;
}

function checkLimits(counts: InputCounts, limits: InputLimits, bound: '' | 'at least '): void {
  const over = (what: string, count: number, limit: number, flag: string) => {
    throw new LarderError(
      'invalid_argument',
      `the input root stages ${bound}${count} ${what}, more than this worker allows (${limit}, --${flag})`,
    );
  };
  if (counts.files > limits.maxFiles) over('files and symlinks', counts.files, limits.maxFiles, 'max-input-files');
  if (counts.directories > limits.maxDirectories)
    over('directories', counts.directories, limits.maxDirectories, 'max-input-dirs');
  if (counts.bytes > limits.maxBytes) over('bytes of files', counts.bytes, limits.maxBytes, 'max-input-bytes');
}

function tooDeep(): never {
  throw new LarderError('invalid_argument', `the input root nests directories more than ${MAX_DEPTH} deep`);
}
