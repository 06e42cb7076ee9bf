/**
 * Materialises an action's input root under its exec root: directories are made, files hard-linked from the
 * worker's file cache, symlinks created as symlinks.
 *
 * Nothing is created until the whole tree has been read and checked: every name, every symlink target, and
 * every blob's presence. Missing blobs are all reported at once (MissingBlobsError), so the client can upload
 * them in one round and retry, as REAPI's FAILED_PRECONDITION / MISSING violations intend. A malformed tree is
 * 'invalid_argument' naming the path. Staging never follows a symlink (every path it creates has only
 * directories it made above it), so the symlink check is policy: an input root may not point out of itself.
 *
 * On failure the exec root is left half-staged; the caller deletes it.
 */
import { fromBinary } from '@bufbuild/protobuf';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { type Digest, parseDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import {
  type Directory,
  DirectorySchema,
  type Digest as DigestMessage,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { WorkerCas } from './cas.ts';
import type { FileCache } from './file-cache.ts';

/** Directory protos are read whole; real ones are kilobytes. */
const MAX_DIRECTORY_BYTES = 4 * 1024 * 1024;
/** Nodes staged for one action. Directories are shared by digest, so a small DAG can expand enormously. */
const MAX_STAGED_NODES = 2_000_000;
/** Directory levels below the input root; deeper paths would not fit PATH_MAX anyway. */
const MAX_DEPTH = 1000;
/** Symlinks followed while resolving one input symlink, as the kernel's own limit (ELOOP). */
const MAX_SYMLINK_HOPS = 40;
const READ_CONCURRENCY = 16;
const LINK_CONCURRENCY = 32;

/** Blobs the input root needs that the CAS does not hold: Directory protos and files. */
export class MissingBlobsError extends LarderError {
  constructor(readonly digests: Digest[]) {
    super(
      'not_found',
      `${digests.length} input blob(s) missing from the CAS: ${digests.slice(0, 5).map(label).join(', ')}${digests.length > 5 ? ', …' : ''}`,
    );
  }
}

export interface StageInputsOptions {
  cas: WorkerCas;
  cache: FileCache;
  rootDigest: Digest;
  /** Created if missing; should be empty. */
  execRoot: string;
  signal?: AbortSignal;
}

export interface StageStats {
  files: number;
  directories: number;
  /** Bytes of all staged files. */
  bytes: number;
  linked: number;
  copied: number;
  fetchedFiles: number;
  fetchedBytes: number;
  /** Absolute paths: the exec root first, then every directory of the input tree, parents before children. */
  createdDirectories: string[];
}

interface Entry {
  kind: 'file' | 'directory' | 'symlink';
  digest?: Digest;
  executable?: boolean;
  target?: string;
}

/** A Directory checked once: its entries by name, digests parsed. */
interface Checked {
  entries: Map<string, Entry>;
}

export async function stageInputs(options: StageInputsOptions): Promise<StageStats> {
  const { cas, rootDigest, signal } = options;
  const tree = await readTree(cas, rootDigest, signal);
  countNodes(tree, rootDigest);
  checkSymlinks(tree, rootDigest);
  signal?.throwIfAborted();
  return materialise(options, tree);
}

/** Reads every distinct Directory once, breadth first; throws MissingBlobsError listing everything absent. */
async function readTree(cas: WorkerCas, root: Digest, signal?: AbortSignal): Promise<Map<string, Checked>> {
  const tree = new Map<string, Checked>();
  const missing: Digest[] = [];
  const files = new Map<string, Digest>();
  let level: Array<{ digest: Digest; path: string }> = [{ digest: root, path: '' }];
  const seen = new Set([label(root)]);
  while (level.length > 0) {
    signal?.throwIfAborted();
    const read = await mapLimit(level, READ_CONCURRENCY, ({ digest }) => readDirectory(cas, digest));
    const next: typeof level = [];
    level.forEach(({ digest, path }, i) => {
      const directory = read[i];
      if (directory === null || directory === undefined) {
        missing.push(digest);
        return;
      }
      const checked = checkDirectory(directory, digest, path);
      tree.set(label(digest), checked);
      for (const [name, entry] of checked.entries) {
        if (entry.kind === 'file' && entry.digest!.sizeBytes > 0) files.set(label(entry.digest!), entry.digest!);
        if (entry.kind === 'directory' && !seen.has(label(entry.digest!))) {
          seen.add(label(entry.digest!));
          next.push({ digest: entry.digest!, path: join(path, name) });
        }
      }
    });
    level = next;
  }
  missing.push(...(await cas.findMissing([...files.values()])));
  if (missing.length > 0) throw new MissingBlobsError(missing);
  return tree;
}

async function readDirectory(cas: WorkerCas, digest: Digest): Promise<Directory | null> {
  if (digest.sizeBytes > MAX_DIRECTORY_BYTES) {
    throw new LarderError(
      'invalid_argument',
      `input Directory ${label(digest)} is over the ${MAX_DIRECTORY_BYTES}-byte limit`,
    );
  }
  const bytes = await cas.readBytes(digest, MAX_DIRECTORY_BYTES);
  if (bytes === null) return null;
  try {
    return fromBinary(DirectorySchema, bytes);
  } catch (err) {
    throw new LarderError(
      'invalid_argument',
      `input Directory ${label(digest)} is not a valid Directory protobuf: ${(err as Error).message}`,
    );
  }
}

/** Checks names (one component each, unique across files, directories and symlinks) and digests. */
function checkDirectory(directory: Directory, digest: Digest, path: string): Checked {
  const where = path === '' ? `the input root (${label(digest)})` : `input directory "${path}"`;
  const entries = new Map<string, Entry>();
  const add = (name: string, entry: Entry) => {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new LarderError('invalid_argument', `${where} has an entry with an invalid name ${JSON.stringify(name)}`);
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
    if (link.target === '' || link.target.includes('\0')) {
      throw new LarderError(
        'invalid_argument',
        `input symlink "${join(path, link.name)}" has an invalid target ${JSON.stringify(link.target)}`,
      );
    }
    add(link.name, { kind: 'symlink', target: link.target });
  }
  return { entries };
}

/**
 * Refuses absolute targets and targets that leave the input root. Targets are resolved the way the kernel
 * will, following the tree's own symlinks: "x/up -> .." then "x/y -> up/.." escapes though neither looks like
 * it does. A Directory shared by digest is checked at every place it appears, since where a target leads
 * depends on what surrounds it; countNodes has bounded that walk to what staging will do anyway.
 */
function checkSymlinks(tree: Map<string, Checked>, root: Digest): void {
  const walk = (stack: Checked[], path: string) => {
    const here = stack[stack.length - 1]!;
    for (const [name, entry] of here.entries) {
      const at = join(path, name);
      if (entry.kind === 'symlink') {
        if (entry.target!.startsWith('/')) {
          throw new LarderError(
            'invalid_argument',
            `input symlink "${at}" -> "${entry.target}" is absolute; only relative targets are allowed`,
          );
        }
        if (resolve(tree, stack, entry.target!, 0) === 'escapes') {
          throw new LarderError(
            'invalid_argument',
            `input symlink "${at}" -> "${entry.target}" points outside the input root`,
          );
        }
      } else if (entry.kind === 'directory') {
        walk([...stack, tree.get(label(entry.digest!))!], at);
      }
    }
  };
  walk([tree.get(label(root))!], '');
}

/**
 * Where `target` leads from the directory at the top of `start`: the directory stack it reaches, 'escapes' when
 * it climbs above the root, or 'inside' when it stops at a file or dangles or loops (those fail in the action;
 * they do not escape).
 */
function resolve(
  tree: Map<string, Checked>,
  start: Checked[],
  target: string,
  hops: number,
): Checked[] | 'escapes' | 'inside' {
  if (target.startsWith('/')) return 'escapes';
  const stack = [...start];
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 1) return 'escapes';
      stack.pop();
      continue;
    }
    const entry = stack[stack.length - 1]!.entries.get(part);
    if (entry === undefined || entry.kind === 'file') return 'inside'; // ENOENT / ENOTDIR from here on
    if (entry.kind === 'directory') {
      stack.push(tree.get(label(entry.digest!))!);
      continue;
    }
    if (hops >= MAX_SYMLINK_HOPS) return 'inside'; // ELOOP
    const through = resolve(tree, stack, entry.target!, hops + 1);
    if (!Array.isArray(through)) return through;
    stack.splice(0, stack.length, ...through);
  }
  return stack;
}

/**
 * Refuses a tree that would expand into more nodes than one action may stage, or nest deeper than paths can
 * (which also bounds the recursion of the walks that follow).
 */
function countNodes(tree: Map<string, Checked>, root: Digest): void {
  const memo = new Map<string, { nodes: number; height: number }>();
  const count = (digest: Digest, depth: number): { nodes: number; height: number } => {
    const known = memo.get(label(digest));
    if (known === undefined && depth > MAX_DEPTH) tooDeep();
    if (known !== undefined) {
      if (depth + known.height > MAX_DEPTH) tooDeep();
      return known;
    }
    const result = { nodes: 1, height: 0 };
    for (const entry of tree.get(label(digest))!.entries.values()) {
      if (entry.kind !== 'directory') {
        result.nodes++;
        continue;
      }
      const child = count(entry.digest!, depth + 1);
      result.nodes += child.nodes;
      result.height = Math.max(result.height, child.height + 1);
      if (result.nodes > MAX_STAGED_NODES) {
        throw new LarderError(
          'too_large',
          `the input root expands to more than ${MAX_STAGED_NODES} files, directories and symlinks`,
        );
      }
    }
    memo.set(label(digest), result);
    return result;
  };
  count(root, 0);
}

function tooDeep(): never {
  throw new LarderError('invalid_argument', `the input root nests directories more than ${MAX_DEPTH} deep`);
}

async function materialise(options: StageInputsOptions, tree: Map<string, Checked>): Promise<StageStats> {
  const { cas, cache, execRoot, signal } = options;
  const stats: StageStats = {
    files: 0,
    directories: 0,
    bytes: 0,
    linked: 0,
    copied: 0,
    fetchedFiles: 0,
    fetchedBytes: 0,
    createdDirectories: [],
  };
  await mkdir(execRoot, { recursive: true });
  stats.createdDirectories.push(execRoot);

  // Files go through the queue while the walk goes on. The first failure stops everything: queued links
  // are dropped, and the ones already running finish before this returns, so nothing still writes into the
  // exec root when the caller deletes it.
  const queue = new PQueue({ concurrency: LINK_CONCURRENCY });
  let failure: { error: unknown } | null = null;
  const fail = (error: unknown) => {
    failure ??= { error };
    queue.clear();
  };
  const stageFile = async (digest: Digest, executable: boolean, path: string) => {
    if (failure !== null) return;
    try {
      signal?.throwIfAborted();
      const { outcome, fetched } = await cache.link(digest, executable, cas, path);
      // Present a moment ago, evicted from the CAS since: the client re-uploads it like any missing input.
      if (outcome === 'missing') throw new MissingBlobsError([digest]);
      stats[outcome]++;
      if (fetched) {
        stats.fetchedFiles++;
        stats.fetchedBytes += digest.sizeBytes;
      }
    } catch (err) {
      fail(err);
    }
  };
  const walk = async (digest: Digest, dir: string) => {
    stats.directories++;
    for (const [name, entry] of tree.get(label(digest))!.entries) {
      if (failure !== null) return;
      signal?.throwIfAborted();
      const path = join(dir, name);
      if (entry.kind === 'file') {
        stats.files++;
        stats.bytes += entry.digest!.sizeBytes;
        void queue.add(() => stageFile(entry.digest!, entry.executable!, path));
      } else if (entry.kind === 'symlink') {
        await symlink(entry.target!, path);
      } else {
        await mkdir(path);
        stats.createdDirectories.push(path);
        await walk(entry.digest!, path);
      }
    }
  };

  await walk(options.rootDigest, execRoot).catch(fail);
  await queue.onIdle();
  if (failure !== null) throw (failure as { error: unknown }).error;
  return stats;
}

function label(digest: Digest): string {
  return `${digest.hash}/${digest.sizeBytes}`;
}
