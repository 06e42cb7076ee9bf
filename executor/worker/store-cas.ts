/**
 * `WorkerCas` over a local `BlobStore`: what an in-process worker (`larder executor`) reads inputs and writes
 * outputs through. Pass the outermost store, the one wrapped by `verifying()`, so uploads are checked there.
 *
 * Reads are checked here, while the bytes stream past: a store that hands back bytes which do not hash to
 * their digest (a corrupt disk, a bug) must not end up as an action's input, nor in the worker's file cache
 * where it would poison every later action. The empty blob is always present, whatever the store says.
 */
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { type BlobKey, type Digest, formatDigest, isEmptyDigest, parseInstance } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { BlobStore, StoredBlob } from '../../shared/storage/store.ts';
import { statMany } from '../../shared/storage/stat-many.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import { verifier } from '../../shared/storage/verify.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { WorkerCas } from './cas.ts';

/** Store calls in flight for one findMissing or uploadBatch. */
const CONCURRENCY = 32;
/** What one uploadBatch takes: the blobs are in memory already, so this bounds what the uploader holds. */
const MAX_BATCH_BYTES = 4 * 1024 * 1024;

export function storeCas(store: BlobStore, instance: string): WorkerCas {
  const checkedInstance = parseInstance(instance);
  // Digests are already checked (shared/digest.ts), so keys are built without checking them again.
  const keyOf = (digest: Digest): BlobKey => ({ instance: checkedInstance, kind: 'cas', hash: digest.hash });
  const isPresent = async (digest: Digest) =>
    isEmptyDigest(digest) || (await store.stat(keyOf(digest))) === digest.sizeBytes;

  /** The stored blob when it has the digest's size; anything else counts as missing. */
  const openBlob = async (digest: Digest): Promise<StoredBlob | null> => {
    const blob = await store.get(keyOf(digest));
    if (blob !== null && blob.size !== digest.sizeBytes) {
      if (blob.bytes === undefined) await blob.body.cancel();
      return null;
    }
    return blob;
  };

  return {
    async readBytes(digest, maxBytes) {
      if (digest.sizeBytes > maxBytes) {
        throw new LarderError(
          'too_large',
          `blob ${formatDigest(digest)} is over the ${maxBytes}-byte limit for buffered reads`,
        );
      }
      if (isEmptyDigest(digest)) return new Uint8Array(0);
      const blob = await openBlob(digest);
      if (blob === null) return null;
      const bytes = await readWhole(blob, digest.sizeBytes);
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== digest.hash) {
        throw new LarderError(
          'digest_mismatch',
          `cas read ${formatDigest(digest)}: the stored bytes hash to ${actual}`,
        );
      }
      return bytes;
    },

    async readToFile(digest, path, signal) {
      signal?.throwIfAborted();
      const blob = isEmptyDigest(digest) ? null : await openBlob(digest);
      if (blob === null && !isEmptyDigest(digest)) return false;
      let file;
      try {
        file = await open(path, 'wx', 0o600);
      } catch (err) {
        // Nothing of ours is at `path` (it existed already, or the folder is gone): leave it alone.
        await blob?.body.cancel();
        throw err;
      }
      try {
        if (blob !== null) {
          const checked = blob.body.pipeThrough(verifier(keyOf(digest), digest.sizeBytes));
          for await (const chunk of checked) {
            signal?.throwIfAborted(); // leaving the loop cancels the stream
            await file.write(chunk);
          }
        }
        await file.close();
        return true;
      } catch (err) {
        await file.close().catch(() => {});
        await rm(path, { force: true });
        throw err instanceof LarderError ? err.wrap(`cas read ${formatDigest(digest)}`) : err;
      }
    },

    // Every action asks this of all its input files: one statMany (a disk store answers from its index) instead
    // of a stat per file. A blob it cannot vouch for counts as missing, which the client answers by uploading it.
    async findMissing(digests) {
      const sizes = await statMany(store, digests.map(keyOf), CONCURRENCY);
      return digests.filter((digest, i) => !isEmptyDigest(digest) && sizes[i] !== digest.sizeBytes);
    },

    maxBatchBytes: MAX_BATCH_BYTES,

    async uploadBatch(blobs) {
      await mapLimit(blobs, CONCURRENCY, ({ digest, bytes }) =>
        isEmptyDigest(digest) ? Promise.resolve() : store.put(keyOf(digest), bytes, digest.sizeBytes),
      );
    },

    async uploadBytes(digest, bytes) {
      if (await isPresent(digest)) return;
      await store.put(keyOf(digest), bytes, digest.sizeBytes);
    },

    async uploadFile(digest, file) {
      if (await isPresent(digest)) return;
      // The verifying store rejects the upload if the file no longer matches the digest the caller computed.
      const body = Readable.toWeb(file.createReadStream({ start: 0, autoClose: false })) as ReadableStream<Uint8Array>;
      await store.put(keyOf(digest), body, digest.sizeBytes);
    },
  };
}
