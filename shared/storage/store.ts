/**
 * The one storage contract every backend and every wrapper implements. Keys are (instance, ac|cas, hash);
 * see shared/digest.ts.
 *
 * - A miss is `null`, never an error. Errors mean the store could not answer (LarderError 'unavailable',
 *   'timeout', 'no_space', …).
 * - `get` hands the caller a stream it must read to the end or cancel; the store closes its own resources
 *   when the stream ends either way.
 * - `put` reads `body` to its end (or takes it whole: a caller that already holds the bytes passes them as they
 *   are, and no stream is made, which is most of what a small upload costs). If the body stream errors (a verifier rejecting the bytes, a client that
 *   went away) nothing is published and the error is rethrown. Readers never see a partial blob.
 * - Stores do not check hashes themselves: `verifying()` wraps the outermost store so every upload is checked
 *   exactly once, whatever the composition behind it.
 */
import type { BlobKey } from '../digest.ts';

export interface StoredBlob {
  readonly size: number;
  /** The blob's bytes as a stream; read it once. */
  readonly body: ReadableStream<Uint8Array>;
  /**
   * The whole blob, when the store had it in memory anyway (memory store, small files on disk). Callers may
   * send it as it is instead of streaming `body`; a blob with `bytes` needs no cancelling of an unread `body`.
   */
  readonly bytes?: Uint8Array;
  /**
   * The file holding a CAS blob, for a runtime that sends files itself (sendfile). A caller that sends the file
   * instead of reading `body` cancels `body`, which releases the store's handle; the file may be evicted meanwhile.
   */
  readonly path?: string;
}

/** Where a CAS blob kept whole in a local file is, and its size (BlobStore.locate). */
export interface BlobFile {
  readonly path: string;
  readonly size: number;
}

/** An upload's bytes: a stream, or the whole blob when the caller has it in memory anyway. */
export type BlobBody = ReadableStream<Uint8Array> | Uint8Array;

export interface BlobStore {
  /** Opens a stored blob for reading, or null on a miss. */
  get(key: BlobKey): Promise<StoredBlob | null>;
  /**
   * Optional, for stores that keep CAS blobs in local files: the blob's file and size without opening it, for a
   * runtime that sends files itself (sendfile). Synchronous: it answers from what the store holds in memory, so
   * the commonest download is answered without a promise. Null when the store cannot say so from memory (it does
   * not know the blob, or keeps it elsewhere) or when `get` serves it more cheaply (the disk store reads small
   * blobs whole): the caller then asks `get`, which gives the truthful answer. The file may be evicted before it
   * is sent; the sender answers that as the miss it then is.
   */
  locate?(key: BlobKey): BlobFile | null;
  /**
   * Optional, for stores that read small blobs whole at little cost (small files on disk): reads the blob `key`,
   * which the caller expects to be `size` bytes, into `into` from `at`, synchronously, so that a reply carrying many
   * small blobs (BatchReadBlobs) is filled where it lies, with no buffer of the store's own per blob. The byte just
   * after (`into[at + size]`) must exist and may be overwritten: one byte more is asked for, so a file of another size
   * is noticed in the same read; the caller restores it. True when `into` now holds exactly the blob's bytes. False
   * when the store did not read it (it does not know the blob, it is larger than the store reads this way, or it is
   * not `size` bytes): the caller then asks `get`, which gives the truthful answer. Errors mean the store could not
   * read it.
   */
  readSmallInto?(key: BlobKey, into: Uint8Array, at: number, size: number): boolean;
  /** The stored blob's size without reading its bytes, or null on a miss. */
  stat(key: BlobKey): Promise<number | null>;
  /**
   * Optional, for stores that can answer for many blobs at once (an index in front of a bucket): the sizes of
   * `keys`, in order. A size is an answer stat would give; null means "not known to be stored", which may also be
   * a blob the store holds but cannot confirm without a round trip per blob. Callers treat null as missing (and
   * upload the blob again), never the other way round: FindMissingBlobs, and the executor's check of an action's
   * inputs (a missing input is reported to the client, which uploads it), are the callers.
   */
  statMany?(keys: readonly BlobKey[]): Promise<Array<number | null>>;
  /**
   * Optional, for stores that expire blobs by age (an S3 lifecycle rule): the blob's size and when it was last
   * written (ms since the epoch), or null on a miss.
   */
  statWritten?(key: BlobKey): Promise<{ size: number; writtenAt: number } | null>;
  /** Stores exactly `size` bytes read from `body` under `key`, atomically. */
  put(key: BlobKey, body: BlobBody, size: number): Promise<void>;
  /**
   * Optional, for stores on a local file system: publishes a complete file of `size` bytes, already synced,
   * whose SHA-256 the caller computed as `sha256`, by moving it (rename) instead of copying it. Resolves false
   * when the store cannot (another file system, a blob over its budget); the caller then uses `put`, and still
   * owns the file either way unless this resolved true.
   */
  adopt?(key: BlobKey, path: string, size: number, sha256: string): Promise<boolean>;
  /**
   * Optional, with `adopt`: the file system under the store filled up below its budget while a caller wrote a file
   * to adopt. Evicts least recently used blobs for `bytes` more; resolves false when there was nothing to evict.
   */
  evictForFullDisk?(bytes: number): Promise<boolean>;
  /** Releases what the store holds open (file handles, sockets). */
  close?(): Promise<void>;
}
