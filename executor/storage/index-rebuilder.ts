/**
 * Fills a bucket index from a listing of the bucket when it was never built or has been lost (a Redis restarted
 * without persistence, FLUSHALL): every frontend checks the index's marker at start and then every `everyMs`, and
 * the one that claims the rebuild lists the bucket, recording each object still younger than the TTL, dated by its
 * Last-Modified as an upload would be. Until it finishes, blobs it has not reached yet read as missing (and are
 * uploaded again): never the other way round.
 */
import type { Logger } from '../../shared/log.ts';
import type { BlobKey } from '../../shared/digest.ts';
import type { RedisBucketIndex } from './redis-bucket-index.ts';

export interface IndexRebuilderOptions {
  index: Pick<RedisBucketIndex, 'claimRebuild' | 'recordMany' | 'markBuilt'>;
  /** The bucket's CAS objects, a page at a time (S3Store.listCas). */
  list: () => AsyncIterable<Array<{ key: BlobKey; size: number; writtenAt: number }>>;
  ttlMs: number;
  /** How often the marker is looked at. */
  everyMs: number;
  log?: Logger;
  now?: () => number;
}

/** How long one frontend's claim on a rebuild keeps others off it; a rebuild that dies is taken over after it. */
const CLAIM_MS = 10 * 60_000;

export class IndexRebuilder {
  readonly #options: IndexRebuilderOptions;
  readonly #now: () => number;
  readonly #timer: ReturnType<typeof setInterval>;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: IndexRebuilderOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#check();
    this.#timer = setInterval(() => this.#check(), options.everyMs);
    this.#timer.unref();
  }

  /** Stops checking, and waits for a rebuild under way to stop at the end of its page. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  #check(): void {
    // One check at a time: a slow rebuild is not started again by the next tick.
    this.#running = this.#running.then(() =>
      this.#rebuildIfLost().catch((err: unknown) =>
        this.#options.log?.warn(`bucket index: rebuild failed, retried later: ${(err as Error)?.message ?? err}`),
      ),
    );
  }

  async #rebuildIfLost(): Promise<void> {
    const { index, ttlMs } = this.#options;
    if (this.#closed || !(await index.claimRebuild(CLAIM_MS))) return;
    let recorded = 0;
    for await (const page of this.#options.list()) {
      if (this.#closed) return; // the claim runs out, and another frontend takes the rebuild over
      const now = this.#now();
      const entries = page
        .map(({ key, size, writtenAt }) => ({ key, entry: { size, until: writtenAt + ttlMs } }))
        .filter(({ entry }) => entry.until > now);
      if (entries.length > 0) await index.recordMany(entries);
      recorded += entries.length;
    }
    await index.markBuilt();
    this.#options.log?.info('bucket index rebuilt from a listing of the bucket', { entries: recorded });
  }
}
