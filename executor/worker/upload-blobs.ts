/**
 * Uploads an action's output blobs: asks the CAS which it lacks in chunks, then sends small blobs many to a
 * call (WorkerCas.uploadBatch) and large ones streamed, one each. An action with 100,000 small outputs costs
 * tens of round trips, not 200,000. Bounded: at most `BATCHES_IN_FLIGHT` batches (each under the CAS's batch
 * size) and `LARGE_IN_FLIGHT` streams are held at once, whatever the number or size of the outputs.
 */
import type { FileHandle } from 'node:fs/promises';
import { type Digest, formatDigest } from '../../shared/digest.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { WorkerCas } from './cas.ts';
import { readWhole } from './output-file.ts';

/** A blob to upload: bytes in hand (a Tree), or an output file read again when it is sent. */
export type OutputBlob = { digest: Digest; bytes: Uint8Array } | { digest: Digest; path: string; rel: string };

/** Opens an output file safely for reading (output-file.ts); the caller of the opener closes the handle. */
export type OpenOutput = (path: string, rel: string) => Promise<FileHandle>;

/** Digests per findMissing call. */
const FIND_MISSING_CHUNK = 10_000;
/** Blobs per batch call, however small: REAPI servers cap the count as well as the bytes. */
const MAX_BATCH_BLOBS = 1000;
const BATCHES_IN_FLIGHT = 4;
/** Files opened at once while a batch is assembled. */
const READS_PER_BATCH = 16;
const LARGE_IN_FLIGHT = 4;

export async function uploadBlobs(cas: WorkerCas, blobs: readonly OutputBlob[], open: OpenOutput): Promise<void> {
  for (let at = 0; at < blobs.length; at += FIND_MISSING_CHUNK) {
    const chunk = blobs.slice(at, at + FIND_MISSING_CHUNK);
    const missing = new Set((await cas.findMissing(chunk.map((b) => b.digest))).map(formatDigest));
    const needed = chunk.filter((b) => missing.has(formatDigest(b.digest)));
    const small = needed.filter((b) => b.digest.sizeBytes <= cas.maxBatchBytes);
    const large = needed.filter((b) => b.digest.sizeBytes > cas.maxBatchBytes);
    await Promise.all([
      mapLimit(batches(small, cas.maxBatchBytes), BATCHES_IN_FLIGHT, async (batch) => {
        const loaded = await mapLimit(batch, READS_PER_BATCH, async (blob) => ({
          digest: blob.digest,
          bytes: 'bytes' in blob ? blob.bytes : await readFile(open, blob),
        }));
        await cas.uploadBatch(loaded);
      }),
      mapLimit(large, LARGE_IN_FLIGHT, async (blob) => {
        if ('bytes' in blob) return cas.uploadBytes(blob.digest, blob.bytes);
        const file = await open(blob.path, blob.rel);
        try {
          await cas.uploadFile(blob.digest, file);
        } finally {
          await file.close();
        }
      }),
    ]);
  }
}

/** Groups blobs, in order, into batches of at most `maxBytes` summed and MAX_BATCH_BLOBS each. */
function batches(blobs: readonly OutputBlob[], maxBytes: number): OutputBlob[][] {
  const out: OutputBlob[][] = [];
  let current: OutputBlob[] = [];
  let bytes = 0;
  for (const blob of blobs) {
    if (current.length > 0 && (bytes + blob.digest.sizeBytes > maxBytes || current.length >= MAX_BATCH_BLOBS)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(blob);
    bytes += blob.digest.sizeBytes;
  }
  if (current.length > 0) out.push(current);
  return out;
}

async function readFile(open: OpenOutput, blob: { digest: Digest; path: string; rel: string }): Promise<Uint8Array> {
  const file = await open(blob.path, blob.rel);
  try {
    return await readWhole(file, blob.digest.sizeBytes);
  } finally {
    await file.close();
  }
}
