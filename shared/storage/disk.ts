/**
 * Content-addressed files on local disk with an LRU size budget. The default store.
 *
 * Layout under the root:  blobs/{instance}/{ac|cas}/{hash[0:2]}/{hash}   and   tmp/ for uploads in flight.
 * A blob is written to tmp/{owner}/ (one folder per process, owner.ts) and published by rename(2), so readers
 * (and a restart after `kill -9`) only ever see whole blobs; at start-up the folders of processes that are gone
 * are removed, those of processes still serving the folder are not. Concurrent writers of one blob each write
 * their own temp file and the last rename wins, which is harmless: CAS blobs with one name have one content.
 *
 * The index (what is stored, its size, when it was last used) lives in memory and is rebuilt from the files
 * at start-up, ordered by modification time; hits refresh a file's mtime now and then so that order survives
 * restarts. The files are the truth: `stat` always asks the file system, and reads open the file, so processes
 * that share one folder (an edge and an executor) see each other's blobs, and each other's evictions, at once.
 * `statMany` (FindMissingBlobs: thousands at a time) answers from the index instead, trusting it only as far as
 * the ledger vouches for it (see there).
 * One budget holds for all of them: each tells the others what it publishes and evicts through a ledger
 * (disk-ledger.ts) and evicts against the folder's total, counting its own uploads in flight from their first
 * byte (others' uploads in flight are the slack).
 *
 * Power loss: a blob's bytes are synced to stable storage (fdatasync, or fsync: see writeWholeFile) before its rename
 * publishes it, so a crash never leaves a torn or empty file under a valid name; at worst the rename itself is lost,
 * a miss.
 * (Re-hashing recent blobs after an unclean shutdown was the alternative; see the README for why not.)
 *
 * A full file system (ENOSPC) below the budget evicts least recently used blobs for the rest of the upload and
 * retries it once; a budget larger than the file system is warned about at start-up.
 *
 * Private: the folder holds every tenant's blobs, and actions run as other users. Folders are made 0700 and
 * files 0600 (BLOB_MODE), and at open a folder made by an older larder (0755) is closed by its top folders,
 * which is enough (nobody else can get past them) and costs no walk over the blobs. Processes sharing a folder
 * must therefore run as one user.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm, stat, statfs, unlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import type { BlobKey } from '../digest.ts';
import { LarderError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { formatSize } from '../size.ts';
import { Ledger } from './disk-ledger.ts';
import { ownerAlive, ownerTag } from './owner.ts';
import type { BlobBody, BlobFile, BlobStore, StoredBlob } from './store.ts';
import {
  BLOB_MODE,
  diskError,
  errno,
  fileSize,
  fileStream,
  openForReading,
  writeFile,
  writeWholeFile,
} from './disk-files.ts';
import { bodyError, bytesBlob, collect } from './streams.ts';
import { TempFiles } from './temp-files.ts';

export interface DiskStoreOptions {
  /** The folder that holds the cache; created if missing. */
  path: string;
  /** Size budget in bytes; least recently used blobs are deleted to stay under it. */
  maxBytes: number;
  /** Told when the budget cannot hold (it exceeds the file system) and when a full disk forces evictions. */
  log?: Logger;
  /** Called with the number of blobs each eviction removed (for metrics). */
  onEvicted?: (blobs: number) => void;
}

interface Entry {
  size: number;
  usedAt: number;
  /**
   * When the blob was last known to be there (found on disk, published by this process, or announced by another
   * through the ledger), and how many ledger gaps there had been then: statMany trusts an entry confirmed within
   * CONFIRMED_FOR_MS and since the last gap.
   */
  confirmedAt: number;
  confirmedGap: number;
}

/**
 * Blobs up to this size are read whole, and their bytes written, with synchronous calls: most of Bazel's blobs
 * are this small, and for them the thread-pool round trips of async fs calls cost more than the I/O itself (which
 * the page cache absorbs). Creating and renaming their files waits for the journal, so that stays on the thread
 * pool (writeWholeFile). The event loop is never blocked for longer than one small file's read takes.
 */
const SMALL_BLOB = 64 * 1024;
/** Hits refresh the file's mtime at most this often, so restarts keep a fair LRU order at little cost. */
const TOUCH_INTERVAL_MS = 10 * 60 * 1000;
/**
 * statMany trusts what the index knows present for this long after it was last confirmed. Larder processes
 * announce every eviction before they delete (disk-ledger.ts), so within this time only something else deleting
 * blobs behind larder's back (by hand, another tool) goes unseen; this bounds how long.
 */
const CONFIRMED_FOR_MS = 60 * 1000;
/**
 * Deciding what to evict catches the ledger up only when it was not caught up this recently: a second catch-up per
 * upload cost 3-6% of a new 4 KiB upload's server CPU on Bun (issue 21).
 */
const BUDGET_CATCH_UP_MS = 1;
/** statMany's file-system checks made at once, before the event loop gets a turn (about 1.5 ms of them). */
const RECHECKS_AT_ONCE = 256;

export class DiskStore implements BlobStore {
  readonly #root: string;
  /** The blobs/ folder, joined once: the read paths name a file per blob without path.join's normalising. */
  readonly #blobs: string;
  readonly #maxBytes: number;
  readonly #log: Logger | undefined;
  readonly #onEvicted: ((blobs: number) => void) | undefined;
  // By BlobId (see there). Insertion order is LRU order: a hit re-inserts its entry at the end.
  readonly #index = new Map<BlobId, Entry>();
  readonly #madeDirs = new Set<string>();
  /** tmp/{owner tag}: this process's uploads in flight, apart from other processes' (see owner.ts). */
  readonly #tmp: string;
  /** Names, and files created ahead, for uploads in #tmp. */
  readonly #temps: TempFiles;
  #bytes = 0;
  /** Declared sizes of this process's uploads in flight: counted against the budget from their first byte. */
  #reserved = 0;
  /** What other processes sharing the folder publish and evict (disk-ledger.ts), so one budget holds for all. */
  readonly #ledger: Ledger;
  /** Catch-ups that may have missed news (an eviction among it): entries confirmed before the last are not trusted. */
  #gaps = 0;
  /** When the ledger was last caught up (performance.now()). */
  #caughtUpAt = Number.NEGATIVE_INFINITY;

  private constructor(options: DiskStoreOptions) {
    this.#root = options.path;
    this.#blobs = join(options.path, 'blobs');
    this.#maxBytes = options.maxBytes;
    this.#log = options.log;
    this.#onEvicted = options.onEvicted;
    this.#tmp = join(options.path, 'tmp', ownerTag());
    this.#temps = new TempFiles(this.#tmp);
    // Before the index is rebuilt from the files: whatever others publish from here on is caught up on later.
    this.#ledger = new Ledger(options.path);
  }

  /**
   * Opens (or creates) the cache folder, discards unfinished uploads of processes that are gone (never those of
   * processes still serving the folder) and rebuilds the index.
   */
  static async open(options: DiskStoreOptions): Promise<DiskStore> {
    await makePrivate(options.path, options.log);
    const store = new DiskStore(options);
    await removeAbandoned(join(store.#root, 'tmp'));
    await mkdir(store.#tmp, { recursive: true, mode: FOLDER_MODE });
    await mkdir(join(store.#root, 'blobs'), { recursive: true, mode: FOLDER_MODE });
    await store.#rebuildIndex();
    await store.#evictFor(0);
    await store.#checkBudgetFits();
    return store;
  }

  /** Warns when the budget is more than the file system can ever hold: the disk would fill before any eviction. */
  async #checkBudgetFits(): Promise<void> {
    let capacity: number;
    try {
      const fs = await statfs(this.#root);
      capacity = fs.blocks * fs.bsize;
    } catch {
      return; // not every runtime or file system can tell
    }
    if (this.#maxBytes > capacity) {
      this.#log?.warn(
        `disk: the budget (${formatSize(this.#maxBytes)}) is larger than the file system (${formatSize(capacity)}): ` +
          'when the disk fills, blobs are evicted early to make room; set a smaller budget',
        { path: this.#root },
      );
    }
  }

  async close(): Promise<void> {
    this.#ledger.close();
    await this.#temps.close();
  }

  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#index.size;
  }

  /**
   * Asks the file system every time, not the index: another process sharing the folder may have evicted the
   * blob (or replaced an action-cache entry), and "present" must be true when it is said.
   */
  async stat(key: BlobKey): Promise<number | null> {
    const id = blobId(key);
    const size = this.#fileSize(id);
    if (size === null) this.#forget(id);
    else this.#current(id, size);
    return size;
  }

  /**
   * Sizes of many blobs at once (FindMissingBlobs asks for thousands): null for each that is not stored.
   *
   * Asking the file system for each (what `stat` does) costs a system call per digest on the event loop, more than
   * bazel-remote's whole in-memory lookup. So the index answers, and stays truthful with other processes
   * on the folder as follows:
   * - "present" is only said of blobs confirmed there lately: every larder process announces in the ledger what
   *   it evicts *before* deleting it, and the ledger is caught up first, so an eviction that has happened is known.
   * - If the ledger may have lost news (a process's ledger came and went before this one read it: it started,
   *   evicted and stopped meanwhile), every confirmation is withdrawn (`#gaps`).
   * - Confirmations older than CONFIRMED_FOR_MS bound how long deletions by anything else go unseen.
   * Blobs the index knows but cannot vouch for are checked on the file system, a few hundred per turn of the event
   * loop.
   * Blobs the index does not know are reported missing without a look: the index learns of every publish
   * through the ledger, and a wrong "missing" only costs the client an upload, which then indexes the blob.
   */
  async statMany(keys: readonly BlobKey[]): Promise<Array<number | null>> {
    this.#catchUp();
    const gaps = this.#gaps;
    const trustedSince = Date.now() - CONFIRMED_FOR_MS;
    const sizes = new Array<number | null>(keys.length).fill(null);
    const recheck: Array<{ at: number; id: BlobId }> = [];
    for (let at = 0; at < keys.length; at++) {
      const id = blobId(keys[at]!);
      const entry = this.#index.get(id);
      if (entry === undefined) continue;
      if (entry.confirmedGap === gaps && entry.confirmedAt >= trustedSince) sizes[at] = entry.size;
      else recheck.push({ at, id });
    }
    // Synchronous checks (see #fileSize), RECHECKS_AT_ONCE between turns of the event loop: once a minute every blob
    // a FindMissingBlobs names is checked again, and 5,000 of them on the thread pool took 150-180 ms of CPU against
    // 28-31 ms synchronously (one process, loaded machine).
    for (let from = 0; from < recheck.length; from += RECHECKS_AT_ONCE) {
      if (from > 0) await setImmediate();
      const asked = { at: Date.now(), gaps: this.#gaps };
      for (const { at, id } of recheck.slice(from, from + RECHECKS_AT_ONCE)) {
        const size = this.#fileSize(id);
        if (size === null) this.#forget(id);
        else this.#current(id, size, asked);
        sizes[at] = size;
      }
    }
    return sizes;
  }

  /**
   * A CAS blob the index knows, by its path, with no system call: the file is opened by whoever sends it, and a
   * blob another process evicted meanwhile fails that open (a miss). Unknown ones are left to `get`, and so are
   * small ones (up to SMALL_BLOB): `get` reads those whole with one synchronous call, which costs less than a sender
   * opening the file and sendfile-ing it (Bun does that on its thread pool: 47 µs of CPU per 4 KiB response of a
   * bare Bun.serve, against 31 µs for the bytes read whole).
   */
  locate(key: BlobKey): BlobFile | null {
    if (key.kind !== 'cas') return null;
    const id = blobId(key);
    const known = this.#index.get(id);
    if (known === undefined || known.size <= SMALL_BLOB) return null;
    this.#markUsed(id, known);
    return { path: this.#pathOf(id), size: known.size };
  }

  async get(key: BlobKey): Promise<StoredBlob | null> {
    const id = blobId(key);
    const path = this.#pathOf(id);
    let known = this.#index.get(id);
    if (known === undefined) {
      // Mostly an action-cache miss (every action asks before it runs): one lookup in the dentry cache answers
      // it, cheaper than an open on the thread pool that fails, and a small hit is then read like a known one.
      const size = this.#fileSize(id);
      if (size === null) return null;
      known = this.#current(id, size);
    }
    if (known.size <= SMALL_BLOB) {
      const bytes = this.#readSmall(id, path, known.size);
      if (bytes !== null) this.#markUsed(id, this.#current(id, bytes.byteLength));
      return bytes === null ? null : bytesBlob(bytes);
    }
    const asked = { at: Date.now(), gaps: this.#gaps };
    let fd: number;
    try {
      fd = await openForReading(path);
    } catch (err) {
      if (errno(err) === 'ENOENT') {
        this.#forget(id); // evicted, possibly by another process sharing the folder
        return null;
      }
      throw diskError(err, 'open');
    }
    // The open handle keeps the bytes readable even if the blob is evicted or replaced meanwhile. A CAS blob's
    // size is fixed by its hash, so the one found above needs no fstat; an action-cache entry may have been replaced
    // (by this process or another sharing the folder) with one of another size, so its size is the file's.
    let size: number;
    try {
      size = key.kind === 'cas' ? known.size : await fileSize(fd);
    } catch (err) {
      closeSync(fd);
      throw diskError(err, 'stat');
    }
    this.#markUsed(id, this.#current(id, size, asked));
    return { size, body: fileStream(fd, size), ...(key.kind === 'cas' ? { path } : {}) };
  }

  /**
   * A small blob's bytes, read with the size the index expects: open, one read, close. readFileSync would also
   * fstat the file for its size, a fourth system call per blob (a BatchReadBlobs of 1,000 blobs makes 1,000 of
   * these). One byte more than expected is asked for, so a file of another size (an action-cache entry replaced
   * meanwhile) is noticed and read whole instead.
   */
  #readSmall(id: BlobId, path: string, expected: number): Uint8Array | null {
    return this.#readOpen(id, path, (fd) => {
      const bytes = Buffer.allocUnsafe(expected + 1);
      const read = readSync(fd, bytes, 0, expected + 1, 0);
      return read === expected ? bytes.subarray(0, read) : readFileSync(fd);
    });
  }

  /**
   * What `read` makes of blob `id`'s file, opened synchronously and closed after; null when the file is gone
   * (evicted, possibly by another process sharing the folder, or removed behind larder's back), which the index
   * then forgets. The small-blob reads share it.
   */
  #readOpen<T>(id: BlobId, path: string, read: (fd: number) => T): T | null {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw diskError(err, 'read');
      this.#forget(id);
      return null;
    }
    try {
      return read(fd);
    } catch (err) {
      throw diskError(err, 'read');
    } finally {
      closeSync(fd);
    }
  }

  /**
   * A small blob read into the caller's memory (BlobStore.readSmallInto: BatchReadBlobs fills its reply with a
   * thousand of these): open, one read of one byte more than `size`, close, like #readSmall but with no buffer of
   * its own. A blob the index does not know, or knows at another size, is left to `get` without a look: mostly a
   * miss, which `get` answers with a lookup that costs no exception (a failed open throws one); a blob another process
   * sharing the folder published is known once the ledger is caught up, which FindMissingBlobs (statMany) and every
   * upload do. Synchronous, for the reason SMALL_BLOB gives; the caller bounds how many it reads before the event loop
   * gets a turn.
   */
  readSmallInto(key: BlobKey, into: Uint8Array, at: number, size: number): boolean {
    if (size > SMALL_BLOB) return false;
    if (at < 0 || at + size + 1 > into.byteLength) throw new RangeError('disk: no room for the blob and one byte more');
    const id = blobId(key);
    const known = this.#index.get(id);
    if (known === undefined || known.size !== size) return false;
    const read = this.#readOpen(id, this.#pathOf(id), (fd) => readSync(fd, into, at, size + 1, 0));
    // Gone, or another size than asked for: `get` says what is stored.
    if (read !== size) return false;
    known.confirmedAt = Date.now();
    known.confirmedGap = this.#gaps;
    this.#markUsed(id, known);
    return true;
  }

  async put(key: BlobKey, body: BlobBody, size: number): Promise<void> {
    if (size > this.#maxBytes) {
      if (!(body instanceof Uint8Array)) await body.cancel();
      throw new LarderError(
        'no_space',
        `disk: a ${size}-byte blob is larger than the whole ${this.#maxBytes}-byte budget`,
      );
    }
    const id = blobId(key);
    // Set once the upload has a temp file of its own, so that a failure removes it.
    let temp: string | null = null;
    // Room is made before the first byte is written, so uploads in flight count against the budget too.
    this.#reserved += size;
    try {
      await this.#evictFor(0, id);
      // A full disk (the budget was too large, or something else filled the file system) evicts least recently
      // used blobs for the rest of this blob and retries, once; only if that fails does the upload fail.
      let retried = false;
      const makeRoom = async (bytes: number) => {
        if (retried) return false;
        retried = true;
        return this.#evictForFullDisk(bytes, id);
      };
      if (body instanceof Uint8Array || size <= SMALL_BLOB) {
        // Bytes in hand (of any size: the caller holds them already) are written in one go, like small blobs.
        const bytes =
          body instanceof Uint8Array
            ? body
            : await collect(body, SMALL_BLOB).catch((err) => Promise.reject(bodyError(err)));
        // The rename is on the thread pool too: like a create, it may wait for the journal (see temp-files.ts).
        await this.#publish(id, bytes.byteLength, async () => {
          temp = await writeWholeFile(this.#temps, bytes, () => makeRoom(bytes.byteLength));
          await rename(temp, this.#pathOf(id)).catch((err) => Promise.reject(diskError(err, 'publish')));
        });
      } else {
        const path = this.#temps.name();
        temp = path;
        const written = await writeFile(path, body, (written) => makeRoom(size - written));
        await this.#publish(id, written, () => rename(path, this.#pathOf(id)));
      }
    } catch (err) {
      // Best effort: a broken tmp/ must not hide the error that brought us here.
      try {
        if (temp !== null) rmSync(temp, { force: true });
      } catch {}
      throw err instanceof LarderError ? err : diskError(err, 'write');
    } finally {
      this.#reserved -= size;
    }
  }

  /** Moves a file the caller wrote and synced into place: one write per upload instead of two (see BlobStore). */
  async adopt(key: BlobKey, path: string, size: number): Promise<boolean> {
    if (size > this.#maxBytes) return false;
    const id = blobId(key);
    try {
      await this.#evictFor(size, id);
      // The caller's file has the caller's mode: made private before it is published.
      await this.#publish(id, size, async () => {
        await chmod(path, BLOB_MODE);
        await rename(path, this.#pathOf(id));
      });
      return true;
    } catch (err) {
      if (errno(err) === 'EXDEV') return false; // another file system: the caller copies it with put
      throw diskError(err, 'publish');
    }
  }

  async evictForFullDisk(bytes: number): Promise<boolean> {
    return this.#evictForFullDisk(bytes, null);
  }

  /** Moves a written file into place and indexes it (room was made for it before it was written). */
  async #publish(id: BlobId, size: number, move: () => Promise<void>): Promise<void> {
    await this.#ensureDir(id);
    await move();
    this.#record(id, size);
    this.#ledger.published(relativePathOf(id), size);
  }

  /**
   * Learns what other processes sharing the folder published and evicted since the last look. When the ledger
   * may have missed some of it, nothing the index knows counts as confirmed any more (see statMany).
   */
  #catchUp(): void {
    this.#caughtUpAt = performance.now();
    const complete = this.#ledger.catchUp((event) =>
      event.published ? this.#record(blobIdOf(event.rel), event.size) : this.#forget(blobIdOf(event.rel)),
    );
    if (!complete) this.#gaps++;
  }

  #record(id: BlobId, size: number): Entry {
    this.#forget(id);
    const now = Date.now();
    const entry = { size, usedAt: now, confirmedAt: now, confirmedGap: this.#gaps };
    this.#index.set(id, entry);
    this.#bytes += size;
    return entry;
  }

  /**
   * The index entry for a blob found to be `size` bytes, corrected if the blob was replaced meanwhile, and confirmed
   * as of when the file system was asked (`asked`: before an await, so a gap found meanwhile is not papered over).
   */
  #current(id: BlobId, size: number, asked = { at: Date.now(), gaps: this.#gaps }): Entry {
    const old = this.#index.get(id);
    const entry = old === undefined || old.size !== size ? this.#record(id, size) : old;
    entry.confirmedAt = asked.at;
    entry.confirmedGap = asked.gaps;
    return entry;
  }

  /** The size of a stored blob's file, or null when there is none. */
  #fileSize(id: BlobId): number | null {
    // Synchronous: a lookup in the kernel's dentry cache, cheaper than a thread-pool round trip. Every new
    // upload asks once (is it stored already?), so this is on the hot path, and a miss must not cost an exception.
    try {
      return statSync(this.#pathOf(id), { throwIfNoEntry: false })?.size ?? null;
    } catch (err) {
      throw diskError(err, 'stat');
    }
  }

  /** A blob's file: `join` once for the folder, not per request (it normalises the whole path each time). */
  #pathOf(id: BlobId): string {
    return `${this.#blobs}/${relativePathOf(id)}`;
  }

  #forget(id: BlobId): void {
    const old = this.#index.get(id);
    if (old === undefined) return;
    this.#index.delete(id);
    this.#bytes -= old.size;
  }

  #markUsed(id: BlobId, entry: Entry): void {
    this.#index.delete(id);
    this.#index.set(id, entry);
    const now = Date.now();
    if (now - entry.usedAt > TOUCH_INTERVAL_MS) {
      entry.usedAt = now;
      const seconds = now / 1000;
      utimes(this.#pathOf(id), seconds, seconds).catch(() => {});
    }
  }

  /** Deletes least recently used blobs until `incoming` more bytes fit (a blob being replaced does not count). */
  async #evictFor(incoming: number, replacing?: BlobId): Promise<void> {
    // Only the budget's accuracy rests on this catch-up (an eviction missed costs a failed unlink at worst), so one
    // made just before is enough: an upload's "already stored?" check (verifying.ts, statMany) made one a moment ago.
    if (performance.now() - this.#caughtUpAt >= BUDGET_CATCH_UP_MS) this.#catchUp();
    const victims: BlobId[] = [];
    const replaced = replacing === undefined ? 0 : (this.#index.get(replacing)?.size ?? 0);
    for (const [id] of this.#index) {
      if (this.#bytes + this.#reserved - replaced + incoming <= this.#maxBytes) break;
      if (id === replacing) continue;
      this.#forget(id); // accounted synchronously, so concurrent puts do not pick the same victims
      victims.push(id);
    }
    await this.#evict(victims);
    // One line per blob, after it is gone: processes sharing the folder can be checked against these.
    for (const id of victims) this.#log?.debug('disk: evicted', { blob: relativePathOf(id) });
  }

  /** Announces the victims (already forgotten) in the ledger, then deletes them: the order statMany relies on. */
  async #evict(victims: BlobId[]): Promise<void> {
    this.#ledger.evicted(victims.map(relativePathOf));
    if (victims.length > 0) this.#onEvicted?.(victims.length);
    await Promise.all(victims.map((id) => unlink(this.#pathOf(id)).catch(() => {})));
  }

  /** Evicts least recently used blobs (not `keep`) until `bytes` are freed; false when there was nothing to evict. */
  async #evictForFullDisk(bytes: number, keep: BlobId | null): Promise<boolean> {
    this.#catchUp();
    const victims: BlobId[] = [];
    let freed = 0;
    for (const [id, entry] of this.#index) {
      if (freed >= bytes) break;
      if (id === keep) continue;
      freed += entry.size;
      this.#forget(id);
      victims.push(id);
    }
    await this.#evict(victims);
    this.#log?.warn(
      `disk: the file system is full below the budget; evicted ${victims.length} blobs (${formatSize(freed)}) and retrying`,
      {
        path: this.#root,
      },
    );
    return victims.length > 0;
  }

  async #ensureDir(id: BlobId): Promise<void> {
    const rel = relativePathOf(id);
    const dir = rel.slice(0, rel.lastIndexOf('/'));
    if (this.#madeDirs.has(dir)) return;
    await mkdir(join(this.#blobs, dir), { recursive: true, mode: FOLDER_MODE });
    this.#madeDirs.add(dir);
  }

  async #rebuildIndex(): Promise<void> {
    const walked = { at: Date.now(), gaps: this.#gaps };
    const found: Array<{ rel: string; size: number; usedAt: number }> = [];
    const walk = async (rel: string): Promise<void> => {
      for (const dirent of await readdir(join(this.#blobs, rel), { withFileTypes: true })) {
        const child = rel === '' ? dirent.name : `${rel}/${dirent.name}`;
        if (dirent.isDirectory()) await walk(child);
        else if (dirent.isFile()) {
          const info = await stat(join(this.#blobs, child));
          found.push({ rel: child, size: info.size, usedAt: info.mtimeMs });
        }
      }
    };
    await walk('');
    found.sort((a, b) => a.usedAt - b.usedAt);
    for (const { rel, size, usedAt } of found) {
      this.#index.set(blobIdOf(rel), { size, usedAt, confirmedAt: walked.at, confirmedGap: walked.gaps });
      this.#bytes += size;
    }
  }
}

/** Every folder of the store: only the user larder runs as may list or enter it. */
const FOLDER_MODE = 0o700;

/**
 * Creates the store folder, private, or closes an existing one and the folders right inside it (blobs/, tmp/,
 * ledger/, uploads/) to everyone but their owner. Its parents are created with the usual mode: they may hold
 * other things, such as the executor's work folder, which actions must reach.
 */
async function makePrivate(root: string, log: Logger | undefined): Promise<void> {
  await mkdir(dirname(root), { recursive: true });
  await mkdir(root, { mode: FOLDER_MODE }).catch((err) => (errno(err) === 'EEXIST' ? undefined : Promise.reject(err)));
  const inside = await readdir(root, { withFileTypes: true });
  const folders = [root, ...inside.filter((e) => e.isDirectory()).map((e) => join(root, e.name))];
  for (const folder of folders) {
    const mode = (await stat(folder)).mode & 0o777;
    if ((mode & 0o077) === 0) continue;
    const was = mode.toString(8).padStart(4, '0');
    try {
      await chmod(folder, FOLDER_MODE);
      log?.info(`disk: made ${folder} private to its owner (it was ${was}, now 0700)`, { path: root });
    } catch (err) {
      // Not its owner: the executor's start-up check (executor/private-paths.ts) decides whether that matters.
      log?.warn(
        `disk: ${folder} is open to other users (${was}) and this user cannot close it: run \`chmod 700 ${folder}\``,
        {
          path: root,
          error: errno(err) ?? String(err),
        },
      );
    }
  }
}

/**
 * Empties tmp/ of what no running process owns: the folders of owners that are gone (a crash or kill -9 leaves
 * them), and loose files of older versions (which emptied tmp/ whole at every start). Folders of processes
 * still serving the folder are left alone, with their uploads in flight.
 */
async function removeAbandoned(tmp: string): Promise<void> {
  const entries = await readdir(tmp, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isDirectory() && ownerAlive(entry.name)) continue;
    await rm(join(tmp, entry.name), { recursive: true, force: true });
  }
}

/**
 * How the index names a blob. A CAS blob of the default instance (every blob Bazel stores unless it is given
 * --remote_instance_name) by its hash alone, the very string the request decoder made: FindMissingBlobs looks up
 * 10,000 at a time, and building a 73-character path for each cost more than all the lookups (about 8 ms of a call's
 * 25). Every other blob by its path under blobs/. A hash has no '/' and a path always has, so the two never collide.
 */
type BlobId = string;

const DEFAULT_CAS = '_/cas/';

function blobId(key: BlobKey): BlobId {
  return key.instance === '' && key.kind === 'cas' ? key.hash : relativePath(key);
}

/**
 * The id of the blob at a path under blobs/ (as the ledger and the folder walk name them). A file that is not where
 * its name puts it (left there by hand) keeps its path as its id, so that evicting it deletes that file.
 */
function blobIdOf(rel: string): BlobId {
  if (!rel.startsWith(DEFAULT_CAS)) return rel;
  const hash = rel.slice(rel.lastIndexOf('/') + 1);
  return relativePathOf(hash) === rel ? hash : rel;
}

/** A blob's path under blobs/, from its id. */
function relativePathOf(id: BlobId): string {
  return id.includes('/') ? id : `${DEFAULT_CAS}${id.slice(0, 2)}/${id}`;
}

/** blobs/ sub-path of a key. */
function relativePath(key: BlobKey): string {
  return `${instanceFolder(key.instance)}/${key.kind}/${key.hash.slice(0, 2)}/${key.hash}`;
}

/** Encoded instance names up to this length are kept readable; file names may be at most 255 bytes. */
const READABLE_INSTANCE = 120;

/**
 * One folder per instance. Names are validated (shared/digest.ts) and encoded so '/' stays inside one folder;
 * a name too long for that (a valid name has up to 256 characters, and every '/' becomes three) is named by
 * its SHA-256 instead. The two forms cannot collide: one starts `i-`, the other `h-`.
 */
function instanceFolder(instance: string): string {
  if (instance === '') return '_';
  const encoded = encodeURIComponent(instance);
  if (encoded.length <= READABLE_INSTANCE) return `i-${encoded}`;
  return `h-${createHash('sha256').update(instance).digest('hex')}`;
}
