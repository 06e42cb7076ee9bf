/**
 * Use this to put a fast store (memory, disk) in front of a slow durable one (S3): hits the front holds never
 * pay the slow round trip, and keep being served while the back is down. Nest it for three tiers:
 * tiered(memory, tiered(disk, s3)).
 *
 * Reads: the front answers if it can. On a miss the back's stream is split (lockstepTee): one branch goes to the
 * client, the other fills the front, at the client's pace and never buffered whole. A failing fill (front full,
 * blob over its budget, disk error) only costs the fill; the client's read goes on. A front that errors on
 * get/stat counts as a miss, so a broken cache disk degrades to S3 speed rather than to an outage. Errors of
 * the back reach the caller (the edge answers 503/504).
 *
 * Writes go to both tiers concurrently, from one pass over the body, and complete only when the back has the
 * blob: the back decides success. The front's copy is published only after the back's (holdEnd), so the front
 * never holds an upload the durable tier refused; a failing front write is ignored. Concurrent rather than
 * back-then-front because a second pass would need the whole blob buffered or a re-download.
 *
 * stat asks the front, then the back; statMany the same, in two batches (the back's may come from an index). A
 * blob the front holds counts as stored even if the back has since dropped it (lifecycle expiry): verifying() then
 * skips re-uploading it until the front evicts it too.
 */
import type { BlobKey } from '../digest.ts';
import { isLarderError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { BlobBody, BlobStore, StoredBlob } from './store.ts';
import { statMany } from './stat-many.ts';
import { lockstepTee } from './tee.ts';

/** Stats in flight at once per tier for statMany, where a tier has no batch answer of its own. */
const STAT_CONCURRENCY = 32;

export interface TieredStoreOptions {
  front: BlobStore;
  back: BlobStore;
  /** Where ignored front-tier failures are reported; silent when absent. */
  log?: Logger;
}

export class TieredStore implements BlobStore {
  readonly #front: BlobStore;
  readonly #back: BlobStore;
  readonly #log: Logger | undefined;

  /**
   * The front's, when it has one: a blob the front reads into the caller's memory never asks the back; one it does not
   * read (a miss there, or a front that fails) is left to `get`, which asks the back and fills the front.
   */
  readonly readSmallInto?: (key: BlobKey, into: Uint8Array, at: number, size: number) => boolean;

  constructor(options: TieredStoreOptions) {
    this.#front = options.front;
    this.#back = options.back;
    this.#log = options.log;
    const front = this.#front;
    if (front.readSmallInto !== undefined) {
      this.readSmallInto = (key, into, at, size) => {
        try {
          return front.readSmallInto!(key, into, at, size);
        } catch (err) {
          return this.#ignored('get', err, false);
        }
      };
    }
  }

  async get(key: BlobKey): Promise<StoredBlob | null> {
    const hit = await this.#front.get(key).catch((err: unknown) => this.#ignored('get', err, null));
    if (hit !== null) return hit;
    const blob = await this.#back.get(key);
    if (blob === null) return null;
    const tee = lockstepTee(blob.body);
    const [toClient, toFront] = tee.branches;
    void this.#front
      .put(key, toFront, blob.size)
      .catch((err: unknown) => this.#ignored('fill', err, undefined))
      .finally(() => tee.detach(1));
    return { size: blob.size, body: toClient };
  }

  async stat(key: BlobKey): Promise<number | null> {
    const size = await this.#front.stat(key).catch((err: unknown) => this.#ignored('stat', err, null));
    return size ?? this.#back.stat(key);
  }

  /** As stat for each key: the front for all of them, then the back, in one batch, for those the front lacks. */
  async statMany(keys: readonly BlobKey[]): Promise<Array<number | null>> {
    const sizes = await statMany(this.#front, keys, STAT_CONCURRENCY).catch((err: unknown) =>
      this.#ignored(
        'stat',
        err,
        keys.map(() => null),
      ),
    );
    const absent = keys.flatMap((_, i) => (sizes[i] === null ? [i] : []));
    if (absent.length === 0) return sizes;
    const backSizes = await statMany(
      this.#back,
      absent.map((i) => keys[i]!),
      STAT_CONCURRENCY,
    );
    absent.forEach((index, i) => {
      sizes[index] = backSizes[i]!;
    });
    return sizes;
  }

  async put(key: BlobKey, body: BlobBody, size: number): Promise<void> {
    // Bytes in hand go to both tiers as they are; only a stream needs the lockstep tee.
    if (body instanceof Uint8Array) return this.#putWhole(key, body, size);
    const tee = lockstepTee(body);
    const [toBack, toFront] = tee.branches;
    const backDone = this.#back.put(key, toBack, size).finally(() => tee.detach(0));
    tee.holdEnd(1, backDone);
    const frontDone = this.#front
      .put(key, toFront, size)
      .catch((err: unknown) => this.#ignored('put', err, undefined))
      .finally(() => tee.detach(1));
    try {
      await backDone;
    } catch (err) {
      // Stop reading the body at once and make sure the front publishes nothing.
      tee.abort(err);
      await frontDone;
      throw err;
    }
    // Wait for the front too, so a read right after the upload is a fast hit.
    await frontDone;
  }

  /** As put, without a tee: the front stores the blob only once the back has (so it never holds what the back refused). */
  async #putWhole(key: BlobKey, bytes: Uint8Array, size: number): Promise<void> {
    await this.#back.put(key, bytes, size);
    await this.#front.put(key, bytes, size).catch((err: unknown) => this.#ignored('put', err, undefined));
  }

  async close(): Promise<void> {
    await Promise.all([this.#front.close?.(), this.#back.close?.()]);
  }

  #ignored<T>(action: string, err: unknown, fallback: T): T {
    // A full front (a blob over its budget) is routine; anything else is a broken tier an operator must hear of.
    const report = isLarderError(err, 'no_space') ? this.#log?.debug : this.#log?.warn;
    report?.(`tier front: ${action} failed, carrying on without it: ${(err as Error)?.message ?? String(err)}`);
    return fallback;
  }
}
