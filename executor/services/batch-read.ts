/**
 * BatchReadBlobs of digests the decoder kept as columns (digest-columns.ts): the reply is laid out first as if every
 * blob were found (found-blobs-reply.ts), and each blob is read into its place in it. A store that reads small blobs
 * into the caller's memory (BlobStore.readSmallInto: the disk store) does so synchronously, a bounded number of them
 * per turn of the event loop; the blobs it does not read (larger ones, unknown ones, a store without the method) are
 * asked of `get`, a few at a time, and copied in. When every blob is found, the reply is sent as it lies. When some
 * blob is not (missing, removed behind larder's back, of another size than asked for, unreadable), the responses are
 * made one by one, the found ones' bytes as views of the layout, and encoded as any reply: a miss or a failure is
 * that blob's own status, never another blob's bytes or the memory's old content.
 */
import { setImmediate } from 'node:timers/promises';
import { EMPTY_SHA256, formatDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import {
  type BatchReadBlobsResponse,
  Compressor_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { type DigestColumns, digestsAt } from '../grpc/digest-columns.ts';
import { foundReply, layOutFound } from '../grpc/found-blobs-reply.ts';
import { blobStatus } from '../reapi/grpc-status.ts';

/**
 * Blobs read synchronously before the event loop gets a turn: 128 small files take about 1-2 ms (three system calls
 * each, from the page cache), the same order as what the disk store's statMany allows itself.
 */
const READS_AT_ONCE = 128;

/** The reply to a BatchReadBlobs of `columns` (already checked against the batch limit) in `instance`. */
export async function readBatch(
  store: BlobStore,
  instance: string,
  columns: DigestColumns,
  concurrency: number,
): Promise<BatchReadBlobsResponse> {
  const { hashes, sizes } = columns;
  const layout = layOutFound(columns);
  const { message, dataAt } = layout;
  /** Blobs not found or not read, by index, with why. */
  const failed = new Map<number, unknown>();
  const unread: number[] = [];
  let readThisTurn = 0;
  for (let i = 0; i < hashes.length; i++) {
    const hash = hashes[i]!;
    const size = sizes[i]!;
    if (size === 0 && hash === EMPTY_SHA256) continue; // always there, and nothing to read
    if (store.readSmallInto === undefined) {
      unread.push(i);
      continue;
    }
    if (readThisTurn === READS_AT_ONCE) {
      await setImmediate();
      readThisTurn = 0;
    }
    readThisTurn++;
    const end = dataAt[i]! + size;
    const after = message[end]!; // the byte readSmallInto may overwrite
    try {
      if (!store.readSmallInto({ instance, kind: 'cas', hash }, message, dataAt[i]!, size)) unread.push(i);
    } catch (err) {
      failed.set(i, err);
    }
    message[end] = after;
  }
  await mapLimit(unread, concurrency, async (i) => {
    try {
      message.set(await readOne(store, instance, hashes[i]!, sizes[i]!), dataAt[i]!);
    } catch (err) {
      failed.set(i, err);
    }
  });
  if (failed.size === 0) return foundReply(columns, layout);
  const ok = blobStatus();
  const responses = digestsAt(columns).map((digest, i) => {
    const err = failed.get(i);
    if (err !== undefined) return { digest, status: blobStatus(err) };
    const data = message.subarray(dataAt[i]!, dataAt[i]! + sizes[i]!);
    return { digest, data, status: ok, compressor: Compressor_Value.IDENTITY };
  });
  return { responses } as unknown as BatchReadBlobsResponse;
}

/** A blob by `get`, whole and exactly `size` bytes, or a LarderError (not_found when it is not that blob). */
async function readOne(store: BlobStore, instance: string, hash: string, size: number): Promise<Uint8Array> {
  const blob = await store.get({ instance, kind: 'cas', hash });
  if (blob === null || blob.size !== size) {
    await blob?.body.cancel();
    throw notFound(hash, size);
  }
  const bytes = await readWhole(blob, size);
  // Shorter than it said (a file truncated behind larder's back): its room in the reply would keep old memory.
  if (bytes.byteLength !== size) throw notFound(hash, size);
  return bytes;
}

function notFound(hash: string, size: number): LarderError {
  return new LarderError('not_found', `blob ${formatDigest({ hash, sizeBytes: size })} not found`);
}
