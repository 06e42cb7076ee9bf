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
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { type Digest, formatDigest } from '../../shared/digest.ts';
import type { WorkerCas } from './cas.ts';
import type { FileCache } from './file-cache.ts';
import { checkSymlinks } from './input-symlinks.ts';
import { MissingBlobsError } from '../reapi/missing-blobs.ts';
import { type InputLimits, type InputTree, readInputTree } from './input-tree.ts';

export type { InputLimits } from './input-tree.ts';

const LINK_CONCURRENCY = 32;
/** Files waiting for a link slot: the walk pauses beyond this, so a wide tree never queues a million closures. */
const MAX_QUEUED_FILES = 4 * LINK_CONCURRENCY;

export interface StageInputsOptions {
  cas: WorkerCas;
  cache: FileCache;
  rootDigest: Digest;
  /** Created if missing; should be empty. */
  execRoot: string;
  limits: InputLimits;
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

  // Files go through the queue while the walk goes on. The first failure (an abort included) stops
  // everything: queued links are dropped, and the ones already running finish or give up (file-cache.ts)
  // before this returns, so nothing still writes into the exec root when the caller deletes it.
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
  const walk = async (digest: Digest, dir: string) => {
    stats.directories++;
    for (const [name, entry] of tree.directories.get(formatDigest(digest))!.entries) {
      if (failure !== null) return;
      signal?.throwIfAborted();
      const path = join(dir, name);
      if (entry.kind === 'file') {
        stats.files++;
        stats.bytes += entry.digest!.sizeBytes;
        if (queue.size >= MAX_QUEUED_FILES) await queue.onSizeLessThan(MAX_QUEUED_FILES);
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

  try {
    await walk(options.rootDigest, execRoot).catch(fail);
    await queue.onIdle();
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== null) throw (failure as { error: unknown }).error;
  return stats;
}
