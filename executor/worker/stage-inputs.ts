/**
 * Materialises an action's input root under its exec root: directories are made, files hard-linked from the
 * worker's file cache, symlinks created as symlinks.
 *
 * Nothing is created until the whole tree has been read, measured against the worker's limits and checked
 * (input-tree.ts: names, counts, every blob's presence; input-symlinks.ts: where symlinks lead). Missing blobs
 * are all reported at once (MissingBlobsError), so the client can upload them in one round and retry, as
 * REAPI's FAILED_PRECONDITION / MISSING violations intend. A malformed or oversized tree is 'invalid_argument'.
 *
 * Staging stops soon after `signal` aborts (the operation was cancelled, or the action's timeout passed while
 * staging): no new link or fetch starts, fetches nobody else waits for are cancelled, and this rejects with
 * the signal's reason once nothing of it still writes into the exec root. The caller deletes the half-staged
 * exec root.
 */
import { join } from 'node:path';
import PQueue from 'p-queue';
import { type Digest, formatDigest } from '../../shared/digest.ts';
import type { WorkerCas } from './cas.ts';
import type { FileCache } from './file-cache.ts';
import { type AppliedOps, type FileSystemOp, type FileSystemThread, throwIfStopped } from './file-system-thread.ts';
import { checkSymlinks } from './input-symlinks.ts';
import { MissingBlobsError } from '../reapi/missing-blobs.ts';
import { type InputLimits, type InputTree, readInputTree } from './input-tree.ts';

export type { InputLimits } from './input-tree.ts';

const LINK_CONCURRENCY = 32;
/**
 * Folders, symlinks and links sent to the file-system thread at once: one round trip per batch instead of one per
 * entry, and small enough that another action's batch waits at most a few milliseconds behind one.
 */
const BATCH_OPS = 512;
/** Files waiting for a link slot: the walk pauses beyond this, so a wide tree never queues a million closures. */
const MAX_QUEUED_FILES = 4 * LINK_CONCURRENCY;

export interface StageInputsOptions {
  cas: WorkerCas;
  cache: FileCache;
  rootDigest: Digest;
  /** Created if missing; should be empty. */
  execRoot: string;
  limits: InputLimits;
  /** Makes the folders, symlinks and links of cached files, in batches (file-system-thread.ts). */
  thread: FileSystemThread;
  /**
   * Who the staged directories are handed to (the slot's uid, which the command runs as), in the batch that makes
   * each: no round trip of their own to the file-system thread after staging. Files stay the cache's (read-only).
   * Only for a uid nothing runs as while its action stages (run-action.ts, handOverWhileStaging): root goes on
   * working inside the folders it hands over. Null or absent: left as made.
   */
  owner?: { uid: number; gid: number } | null;
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

export async function stageInputs(options: StageInputsOptions): Promise<StageStats> {
  const { cas, rootDigest, limits, signal } = options;
  const tree = await readInputTree(cas, rootDigest, limits, signal);
  checkSymlinks(tree);
  signal?.throwIfAborted();
  return materialise(options, tree);
}

async function materialise(options: StageInputsOptions, tree: InputTree): Promise<StageStats> {
  const { cas, cache, execRoot, signal, thread } = options;
  const owner = options.owner ?? null;
  /** The ops that make a directory, and hand it over when there is an owner. */
  const makeDirectory = (mkdir: FileSystemOp & { op: 'mkdir' }): FileSystemOp[] =>
    owner === null ? [mkdir] : [mkdir, { op: 'chown', path: mkdir.path, uid: owner.uid, gid: owner.gid }];
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
  stats.createdDirectories.push(execRoot);

  // Folders, symlinks and links of files already cached go to the file-system thread in batches, in tree
  // order. Files that must be fetched first (or whose link failed there) go through the queue, once the batch
  // that makes their folder is done. The first failure (an abort included) stops everything: no new batch is
  // sent, queued links are dropped, and the ones already running finish or give up (file-cache.ts) before this
  // returns, so nothing still writes into the exec root when the caller deletes it.
  const queue = new PQueue({ concurrency: LINK_CONCURRENCY });
  let failure: { error: unknown } | null = null;
  const fail = (error: unknown) => {
    failure ??= { error };
    queue.clear();
  };
  const onAbort = () => fail(signal!.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const stageFile = async (digest: Digest, executable: boolean, path: string) => {
    if (failure !== null) return;
    try {
      const { outcome, fetched } = await cache.link(digest, executable, cas, path, signal);
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

  let ops: FileSystemOp[] = makeDirectory({ op: 'mkdir', path: execRoot, recursive: true });
  /** The cached files `ops` links, by index in `ops`, held in the cache until the batch is done. */
  let held = new Map<number, { digest: Digest; executable: boolean }>();
  /** Files waiting for the batch that makes their folder. */
  let deferred: Array<{ digest: Digest; executable: boolean; path: string }> = [];
  const flush = async () => {
    const batch = { ops, held, deferred };
    ops = [];
    held = new Map();
    deferred = [];
    let applied: AppliedOps;
    try {
      applied = await thread.apply(batch.ops);
    } finally {
      await cache.release([...batch.held.values()]);
    }
    throwIfStopped(applied);
    stats.linked += batch.held.size - applied.failedLinks.length;
    // A link the thread could not make (the cached file deleted behind the cache's back, too many links to one
    // inode) is made by the cache, which knows what to do about each.
    for (const { index } of applied.failedLinks) {
      const file = batch.held.get(index)!;
      batch.deferred.push({ ...file, path: (batch.ops[index] as { path: string }).path });
    }
    for (const file of batch.deferred) {
      if (failure !== null) return;
      if (queue.size >= MAX_QUEUED_FILES) await queue.onSizeLessThan(MAX_QUEUED_FILES);
      void queue.add(() => stageFile(file.digest, file.executable, file.path));
    }
  };
  const add = async (op: FileSystemOp) => {
    ops.push(op);
    if (ops.length >= BATCH_OPS) await flush();
  };
  const walk = async (digest: Digest, dir: string) => {
    stats.directories++;
    for (const [name, entry] of tree.directories.get(formatDigest(digest))!.entries) {
      if (failure !== null) return;
      signal?.throwIfAborted();
      const path = join(dir, name);
      if (entry.kind === 'file') {
        stats.files++;
        stats.bytes += entry.digest!.sizeBytes;
        const file = { digest: entry.digest!, executable: entry.executable! };
        const cached = cache.hold(file.digest, file.executable);
        if (cached === null) {
          deferred.push({ ...file, path });
          if (deferred.length >= BATCH_OPS) await flush();
        } else {
          held.set(ops.length, file);
          await add({ op: 'link', from: cached, path });
        }
      } else if (entry.kind === 'symlink') {
        await add({ op: 'symlink', target: entry.target!, path });
      } else {
        for (const op of makeDirectory({ op: 'mkdir', path })) await add(op);
        stats.createdDirectories.push(path);
        await walk(entry.digest!, path);
      }
    }
  };

  try {
    await walk(options.rootDigest, execRoot)
      .then(() => (failure === null ? flush() : undefined))
      .catch(fail);
    await queue.onIdle();
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Files held for a batch that was never sent.
    await cache.release([...held.values()]);
  }
  if (failure !== null) throw (failure as { error: unknown }).error;
  return stats;
}
