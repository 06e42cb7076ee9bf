/**
 * Use this in front of a bucket (S3) that several frontends share, so FindMissingBlobs costs one index round trip
 * for thousands of digests instead of one HeadObject each. The index (a BucketIndex: Redis in a fleet, see
 * executor/storage/redis-bucket-index.ts) records what the bucket holds when an upload to it completes; this
 * process keeps the positives it has seen (existence-cache.ts).
 *
 * What stays true: statMany answers "present" only for a blob the index or this process saw written to the
 * bucket (or saw there by a HeadObject) less than `ttlMs` before the blob's own last write, so with `ttlMs`
 * shorter than the bucket's lifecycle expiry no entry outlives its object. Everything the index does not know
 * is "missing", not asked of the bucket: a false "missing" only costs a re-upload, and that upload (verifying()
 * decides with statMany) writes the blob to the bucket again, which restarts its lifecycle clock and records it
 * afresh. So the index rebuilds itself from use; and when it is lost or flushed as a whole, a frontend lists the
 * bucket and fills it again (executor/storage/index-rebuilder.ts).
 *
 * Objects removed by other means than expiry (deleted by hand) can be reported present until their entry runs
 * out; a read that finds the blob gone (get, stat) drops the entry here and in the index at once, so the next
 * FindMissingBlobs asks the client for it again.
 *
 * stat stays a HeadObject (after this process's positives): its callers (action-result validation, reads) want
 * the bucket's word, and a fresh answer is recorded for the next statMany.
 */
import type { BlobKey } from '../digest.ts';
import type { Logger } from '../log.ts';
import { ExistenceCache } from './existence-cache.ts';
import type { BlobBody, BlobStore, StoredBlob } from './store.ts';

/** An index entry: the blob's size, and until when (ms since the epoch) the entry may be believed. */
export interface IndexEntry {
  size: number;
  until: number;
}

/** What a shared index of one bucket must do. Implementations expire entries at `until` themselves. */
export interface BucketIndex {
  /** The entries for keys, in order (null: none), in as few round trips as the index can manage. */
  lookup(keys: readonly BlobKey[]): Promise<Array<IndexEntry | null>>;
  record(key: BlobKey, entry: IndexEntry): Promise<void>;
  forget(key: BlobKey): Promise<void>;
  close(): Promise<void>;
}

/** A bucket that can date its objects (S3Store: HeadObject's Last-Modified). */
export type DatedStore = BlobStore & Required<Pick<BlobStore, 'statWritten'>>;

export interface IndexedStoreOptions {
  bucket: DatedStore;
  /** Owned from here on: closed with the store. */
  index: BucketIndex;
  /** How long after an object's last write its entry is believed; keep it below the bucket's lifecycle expiry. */
  ttlMs: number;
  /** Positives this process remembers, and for how long at most (a deletion another frontend saw reaches this one after that). */
  cache?: { maxEntries: number; maxAgeMs: number };
  /** Where index failures are reported (they degrade answers to "missing", never fail a call); silent when absent. */
  log?: Logger;
  /** The clock, ms since the epoch (tests pass their own). */
  now?: () => number;
}

const DEFAULT_CACHE = { maxEntries: 250_000, maxAgeMs: 60_000 };

export class IndexedStore implements BlobStore {
  readonly #bucket: DatedStore;
  readonly #index: BucketIndex;
  readonly #ttlMs: number;
  readonly #cache: ExistenceCache;
  readonly #log: Logger | undefined;
  readonly #now: () => number;

  constructor(options: IndexedStoreOptions) {
    this.#bucket = options.bucket;
    this.#index = options.index;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
    this.#cache = new ExistenceCache({ ...(options.cache ?? DEFAULT_CACHE), now: this.#now });
    this.#log = options.log;
  }

  async statMany(keys: readonly BlobKey[]): Promise<Array<number | null>> {
    const sizes = keys.map((key) => this.#cache.size(key));
    const unknown = keys.flatMap((_, i) => (sizes[i] === null ? [i] : []));
    if (unknown.length === 0) return sizes;
    const entries = await this.#index.lookup(unknown.map((i) => keys[i]!)).catch((err: unknown) =>
      this.#ignored(
        'lookup',
        err,
        unknown.map(() => null),
      ),
    );
    const now = this.#now();
    unknown.forEach((index, i) => {
      const entry = entries[i];
      if (entry === null || entry === undefined || entry.until <= now) return;
      sizes[index] = entry.size;
      this.#cache.remember(keys[index]!, entry.size, entry.until);
    });
    return sizes;
  }

  async stat(key: BlobKey): Promise<number | null> {
    const known = this.#cache.size(key);
    if (known !== null) return known;
    const written = await this.#bucket.statWritten(key);
    if (written === null) {
      await this.#forget(key);
      return null;
    }
    const until = written.writtenAt + this.#ttlMs;
    if (key.kind === 'cas' && until > this.#now()) await this.#record(key, { size: written.size, until });
    return written.size;
  }

  async get(key: BlobKey): Promise<StoredBlob | null> {
    const blob = await this.#bucket.get(key);
    if (blob === null) await this.#forget(key);
    return blob;
  }

  async put(key: BlobKey, body: BlobBody, size: number): Promise<void> {
    // S3 dates an object by when its upload began, so the entry is counted from before the upload, not after.
    const started = this.#now();
    await this.#bucket.put(key, body, size);
    // Only CAS blobs are asked for in batches (FindMissingBlobs); action-cache entries would only take room.
    if (key.kind === 'cas') await this.#record(key, { size, until: started + this.#ttlMs });
  }

  async close(): Promise<void> {
    await Promise.all([this.#bucket.close?.(), this.#index.close()]);
  }

  async #record(key: BlobKey, entry: IndexEntry): Promise<void> {
    this.#cache.remember(key, entry.size, entry.until);
    // Unrecorded, the blob is only reported missing elsewhere (and uploaded again): the put itself succeeded.
    await this.#index.record(key, entry).catch((err: unknown) => this.#ignored('record', err, undefined));
  }

  async #forget(key: BlobKey): Promise<void> {
    this.#cache.forget(key);
    await this.#index.forget(key).catch((err: unknown) => this.#ignored('forget', err, undefined));
  }

  #ignored<T>(action: string, err: unknown, fallback: T): T {
    this.#log?.warn(`bucket index: ${action} failed, answering without it: ${(err as Error)?.message ?? String(err)}`);
    return fallback;
  }
}
