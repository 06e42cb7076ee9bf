/**
 * This process's memory of blobs known to be stored, each until a deadline: positives only, so a stale entry
 * can only ever answer "present" for as long as its source (a bucket index entry) would have. Bounded in
 * entries; past the bound the entries set longest ago go first. indexed.ts keeps one per bucket.
 */
import type { BlobKey } from '../digest.ts';

export interface ExistenceCacheOptions {
  /** Entries kept at most. */
  maxEntries: number;
  /** How long an entry may be trusted at most, however long its source would keep it (ms). */
  maxAgeMs: number;
  /** The clock, ms since the epoch (tests pass their own). */
  now?: () => number;
}

export class ExistenceCache {
  readonly #entries = new Map<string, { size: number; until: number }>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(options: ExistenceCacheOptions) {
    this.#maxEntries = options.maxEntries;
    this.#maxAgeMs = options.maxAgeMs;
    this.#now = options.now ?? Date.now;
  }

  /** The size remembered for key, or null when there is none or its time is up. */
  size(key: BlobKey): number | null {
    const name = nameOf(key);
    const entry = this.#entries.get(name);
    if (entry === undefined) return null;
    if (entry.until > this.#now()) return entry.size;
    this.#entries.delete(name);
    return null;
  }

  /** Remembers that key is stored with size until `until` (ms since the epoch), or maxAgeMs if that is sooner. */
  remember(key: BlobKey, size: number, until: number): void {
    const name = nameOf(key);
    this.#entries.delete(name); // re-inserted last: the newest entry is the last to go
    this.#entries.set(name, { size, until: Math.min(until, this.#now() + this.#maxAgeMs) });
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  forget(key: BlobKey): void {
    this.#entries.delete(nameOf(key));
  }
}

function nameOf(key: BlobKey): string {
  return `${key.instance}/${key.kind}/${key.hash}`;
}
