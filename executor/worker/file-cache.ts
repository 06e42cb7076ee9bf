/**
 * A bounded local cache of input files, so an input used by many actions is fetched from the CAS once and
 * hard-linked into each exec root after that.
 *
 * Layout: `DIR/<hash>-<size>` and `DIR/<hash>-<size>-x`, one entry per (digest, executable bit), because a
 * hard link shares the inode and so the mode. Cached files are read-only (0o444 / 0o555) and owned by the
 * worker, so an action running as another user cannot write through its link into the cache. A fetch goes to
 * `DIR/tmp-<uuid>` and is renamed into place, so readers only ever see whole files and two fetches of one
 * file never race on the name. Stray temp files are deleted at open.
 *
 * Eviction is least recently used by total bytes. Unlinking a cached file is always safe: exec roots that
 * already link it keep the inode alive. A file larger than the whole budget goes straight to its destination.
 * When an inode has as many links as the file system allows (EMLINK; 65000 on ext4) the file is copied.
 *
 * A fetch is shared by every action that wants the file meanwhile, and cancelled only when all of them have
 * given up waiting (their signals aborted): one cancelled action never fails another's staging.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../../shared/digest.ts';
import type { Logger } from '../../shared/log.ts';
import { abortable } from '../../shared/abortable.ts';
import type { WorkerCas } from './cas.ts';

export interface FileCacheOptions {
  /** The folder that holds the cache; created if missing. Use one cache per folder (one worker process). */
  dir: string;
  /** Size budget in bytes; least recently used files are deleted to stay under it. */
  maxBytes: number;
  log?: Logger;
}

/**
 * How a file reached its destination: `linked` (a hard link to the cached file), `copied` (its own inode: the
 * file was empty, larger than the cache, or its cached inode was out of links), or `missing` (not in the CAS,
 * nothing was created). `fetched` says whether this call read the file from the CAS; callers that waited on
 * another call's fetch of the same file did not.
 */
export interface LinkResult {
  outcome: 'linked' | 'copied' | 'missing';
  fetched: boolean;
}

/** A fetch into the cache, with the callers waiting on it; aborted when the last of them stops waiting. */
interface Fetch {
  /** Resolves to false when the CAS lacks the blob. */
  readonly done: Promise<boolean>;
  readonly controller: AbortController;
  waiters: number;
}

const ENTRY_NAME = /^([0-9a-f]{64})-(\d+)(-x)?$/;
const TEMP_PREFIX = 'tmp-';

export class FileCache {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #log: Logger | undefined;
  // Insertion order is LRU order: a hit re-inserts its entry at the end. Values are sizes.
  readonly #index = new Map<string, number>();
  // One fetch per entry at a time; later callers wait on it.
  readonly #fetching = new Map<string, Fetch>();
  // Entries being linked right now are not evicted between their fetch and their link.
  readonly #pins = new Map<string, number>();
  #bytes = 0;
  // Links served from a cached file, and fetches started (the status page's and /metrics' figures).
  #hits = 0;
  #misses = 0;

  private constructor(options: FileCacheOptions) {
    this.#dir = options.dir;
    this.#maxBytes = options.maxBytes;
    this.#log = options.log;
  }

  /** Opens (or creates) the cache folder, deletes unfinished fetches and re-indexes what is there. */
  static async open(options: FileCacheOptions): Promise<FileCache> {
    const cache = new FileCache(options);
    await mkdir(options.dir, { recursive: true, mode: 0o700 });
    const found: Array<{ name: string; size: number; usedAt: number }> = [];
    for (const name of await readdir(options.dir)) {
      const path = join(options.dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await rm(path, { force: true });
        continue;
      }
      const match = ENTRY_NAME.exec(name);
      if (match === null) {
        options.log?.warn('file cache: ignoring a file it did not write', { path });
        continue;
      }
      const stats = await lstat(path);
      if (!stats.isFile() || stats.size !== Number(match[2])) {
        await rm(path, { recursive: true, force: true });
        continue;
      }
      // Every link(2) updates the inode's ctime, so ctime is when the file was last linked into an exec root.
      found.push({ name, size: stats.size, usedAt: stats.ctimeMs });
    }
    found.sort((a, b) => a.usedAt - b.usedAt);
    for (const { name, size } of found) cache.#add(name, size);
    await cache.#evict();
    options.log?.info('file cache opened', { dir: options.dir, files: cache.count, bytes: cache.bytes });
    return cache;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#index.size;
  }

  /** Files, bytes and budget now; links served from the cache and fetches started since it opened. */
  stats(): { files: number; bytes: number; maxBytes: number; hits: number; misses: number } {
    return { files: this.count, bytes: this.#bytes, maxBytes: this.#maxBytes, hits: this.#hits, misses: this.#misses };
  }

  /**
   * For linking in batches (stage-inputs.ts): the path of the cached file for (digest, executable) when it is
   * here now, counted as a hit and pinned (never evicted) until `release`; null when only link() can place it
   * (not cached, empty, or too large to cache).
   */
  hold(digest: Digest, executable: boolean): string | null {
    if (digest.sizeBytes === 0 || digest.sizeBytes > this.#maxBytes) return null;
    const name = entryName(digest, executable);
    if (!this.#touch(name)) return null;
    this.#hits++;
    this.#pins.set(name, (this.#pins.get(name) ?? 0) + 1);
    return join(this.#dir, name);
  }

  /** Ends `hold`s: the files may be evicted again, and what the budget no longer has room for goes now. */
  async release(held: ReadonlyArray<{ digest: Digest; executable: boolean }>): Promise<void> {
    for (const { digest, executable } of held) {
      const name = entryName(digest, executable);
      const pins = (this.#pins.get(name) ?? 1) - 1;
      if (pins <= 0) this.#pins.delete(name);
      else this.#pins.set(name, pins);
    }
    await this.#evict();
  }

  /** Where the cached file for (digest, executable) lives, whether or not it is there now. */
  pathOf(digest: Digest, executable: boolean): string {
    return join(this.#dir, entryName(digest, executable));
  }

  /**
   * Puts the file at `dest` (which must not exist), read-only, fetching it from `cas` into the cache first if
   * needed. The caller owns `dest` afterwards; deleting it never touches the cache. When `signal` aborts this
   * rejects with its reason, soon and without creating `dest`, unless the link was already being made.
   */
  async link(
    digest: Digest,
    executable: boolean,
    cas: WorkerCas,
    dest: string,
    signal?: AbortSignal,
  ): Promise<LinkResult> {
    signal?.throwIfAborted();
    const mode = executable ? 0o555 : 0o444;
    if (digest.sizeBytes === 0) {
      await writeFile(dest, '', { flag: 'wx', mode });
      await chmod(dest, mode); // the umask may have narrowed it
      return { outcome: 'copied', fetched: false };
    }
    if (digest.sizeBytes > this.#maxBytes) {
      if (!(await cas.readToFile(digest, dest, signal))) return { outcome: 'missing', fetched: false };
      await chmod(dest, mode);
      return { outcome: 'copied', fetched: true };
    }

    const name = entryName(digest, executable);
    this.#pins.set(name, (this.#pins.get(name) ?? 0) + 1);
    try {
      let fetched = false;
      // Twice at most: a cached file deleted behind our back (by hand, by another process) is fetched again.
      for (let attempt = 0; ; attempt++) {
        if (this.#touch(name)) {
          if (attempt === 0) this.#hits++;
        } else {
          const wait = this.#waitForFetch(name, digest, mode, cas, signal);
          fetched ||= wait.started;
          if (!(await wait.found)) return { outcome: 'missing', fetched };
          signal?.throwIfAborted();
        }
        try {
          await link(join(this.#dir, name), dest);
          return { outcome: 'linked', fetched };
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EMLINK') {
            await copyFile(join(this.#dir, name), dest, constants.COPYFILE_EXCL);
            await chmod(dest, mode);
            return { outcome: 'copied', fetched };
          }
          // ENOENT may be about `dest`'s folder; only a cached file that has gone is worth fetching again.
          if (code !== 'ENOENT' || attempt > 0 || (await exists(join(this.#dir, name)))) throw err;
          this.#forget(name);
        }
      }
    } finally {
      const pins = this.#pins.get(name)! - 1;
      if (pins === 0) this.#pins.delete(name);
      else this.#pins.set(name, pins);
      await this.#evict();
    }
  }

  /**
   * Waits for the entry's fetch, starting one if none is under way (`started`). A caller whose signal aborts
   * stops waiting at once; the fetch itself is aborted when no caller waits for it any more, and forgotten at
   * that moment, so a later caller starts a fresh one rather than inherit someone else's cancellation.
   */
  #waitForFetch(
    name: string,
    digest: Digest,
    mode: number,
    cas: WorkerCas,
    signal: AbortSignal | undefined,
  ): { started: boolean; found: Promise<boolean> } {
    let fetch = this.#fetching.get(name);
    const started = fetch === undefined;
    if (fetch === undefined) {
      this.#misses++;
      const controller = new AbortController();
      const done = this.#fetch(name, digest, mode, cas, controller.signal).finally(() => {
        if (this.#fetching.get(name) === fetch) this.#fetching.delete(name);
      });
      done.catch(() => {}); // a fetch everyone gave up on fails with nobody listening
      fetch = { done, controller, waiters: 0 };
      this.#fetching.set(name, fetch);
    }
    const current = fetch;
    current.waiters++;
    const found = abortable(current.done, signal).finally(() => {
      current.waiters--;
      if (current.waiters === 0 && signal?.aborted) {
        if (this.#fetching.get(name) === current) this.#fetching.delete(name);
        current.controller.abort(signal.reason);
      }
    });
    return { started, found };
  }

  async #fetch(name: string, digest: Digest, mode: number, cas: WorkerCas, signal: AbortSignal): Promise<boolean> {
    const temp = join(this.#dir, `${TEMP_PREFIX}${randomUUID()}`);
    if (!(await cas.readToFile(digest, temp, signal))) return false;
    try {
      await chmod(temp, mode);
      await rename(temp, join(this.#dir, name));
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    this.#add(name, digest.sizeBytes);
    return true;
  }

  #add(name: string, size: number): void {
    this.#forget(name);
    this.#index.set(name, size);
    this.#bytes += size;
  }

  #forget(name: string): void {
    const size = this.#index.get(name);
    if (size === undefined) return;
    this.#index.delete(name);
    this.#bytes -= size;
  }

  /** Marks an entry used; false when it is not cached. */
  #touch(name: string): boolean {
    const size = this.#index.get(name);
    if (size === undefined) return false;
    this.#index.delete(name);
    this.#index.set(name, size);
    return true;
  }

  /** Deletes least recently used files until the budget holds, skipping files being linked right now. */
  async #evict(): Promise<void> {
    const victims: string[] = [];
    let bytes = this.#bytes;
    for (const [name, size] of this.#index) {
      if (bytes <= this.#maxBytes) break;
      if (this.#pins.has(name)) continue;
      victims.push(name);
      bytes -= size;
    }
    // Forgotten before the first await, so a concurrent call never picks the same victims or links one of them.
    for (const name of victims) this.#forget(name);
    for (const name of victims) {
      this.#log?.debug('file cache: evicted', { name });
      // A failed unlink leaves a file the index no longer counts; it is found again at the next open.
      await unlink(join(this.#dir, name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          this.#log?.warn('file cache: cannot delete an evicted file', { name, error: err.message });
      });
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

function entryName(digest: Digest, executable: boolean): string {
  return `${digest.hash}-${digest.sizeBytes}${executable ? '-x' : ''}`;
}
