/**
 * What a worker host has lately seen in each instance's CAS, so staging does not ask for it again: the digests
 * found present there (by FindMissingBlobs, a read, or an upload), and small blobs read whole (the Directory protos
 * of input roots, which the actions of one build share). In a fleet each of those questions is a round trip to the
 * frontend: a trivial action asked two (its input root Directory, then FindMissingBlobs of its files).
 *
 * Safe to keep, because nothing it remembers answers a client: it only spares a question.
 * - Blobs are content-addressed and every read checks its digest (cas.ts), so remembered bytes are the blob's.
 * - A blob remembered present that has left the CAS since is found missing when staging fetches it (MissingBlobsError,
 *   as before), or is linked from the file cache, which holds the same content.
 * - Everything is kept per instance: one instance's blobs never vouch for another's, or a client could run an
 *   action over another tenant's cached file by naming its digest.
 *
 * Bounded: PRESENT_LIMIT digests and BYTES_LIMIT bytes of blobs of at most BLOB_LIMIT bytes each; the one kept
 * first goes first.
 */
import { type Digest, formatDigest } from '../../shared/digest.ts';
import type { WorkerCas } from './cas.ts';

const PRESENT_LIMIT = 200_000;
const BYTES_LIMIT = 16 * 1024 * 1024;
const BLOB_LIMIT = 64 * 1024;

export class RememberedBlobs {
  readonly #present = new Set<string>();
  readonly #blobs = new Map<string, Uint8Array>();
  #bytes = 0;

  /** `cas` (the CAS of `instance`) with this memory in front of it. */
  wrap(cas: WorkerCas, instance: string): WorkerCas {
    const keyOf = (digest: Digest) => `${instance}\u0000${formatDigest(digest)}`;
    const seen = (digest: Digest) => this.#remember(keyOf(digest));
    return {
      maxBatchBytes: cas.maxBatchBytes,
      readBytes: async (digest, maxBytes) => {
        const key = keyOf(digest);
        const kept = this.#blobs.get(key);
        if (kept !== undefined && kept.byteLength <= maxBytes) return kept;
        const bytes = await cas.readBytes(digest, maxBytes);
        if (bytes !== null) {
          this.#remember(key);
          this.#keep(key, bytes);
        }
        return bytes;
      },
      readToFile: async (digest, path, signal) => {
        const found = await cas.readToFile(digest, path, signal);
        if (found) seen(digest);
        return found;
      },
      findMissing: async (digests) => {
        const unknown = digests.filter((d) => !this.#present.has(keyOf(d)));
        if (unknown.length === 0) return [];
        const missing = await cas.findMissing(unknown);
        const absent = new Set(missing.map(keyOf));
        for (const d of unknown) if (!absent.has(keyOf(d))) seen(d);
        return missing;
      },
      uploadBatch: async (blobs) => {
        await cas.uploadBatch(blobs);
        for (const { digest } of blobs) seen(digest);
      },
      uploadBytes: async (digest, bytes) => {
        await cas.uploadBytes(digest, bytes);
        seen(digest);
      },
      uploadFile: async (digest, file) => {
        await cas.uploadFile(digest, file);
        seen(digest);
      },
    };
  }

  #remember(key: string): void {
    if (this.#present.has(key)) return;
    this.#present.add(key);
    if (this.#present.size > PRESENT_LIMIT) this.#present.delete(this.#present.values().next().value!);
  }

  #keep(key: string, bytes: Uint8Array): void {
    if (bytes.byteLength > BLOB_LIMIT || this.#blobs.has(key)) return;
    this.#blobs.set(key, bytes);
    this.#bytes += bytes.byteLength;
    while (this.#bytes > BYTES_LIMIT) {
      const [oldest, dropped] = this.#blobs.entries().next().value!;
      this.#blobs.delete(oldest);
      this.#bytes -= dropped.byteLength;
    }
  }
}
