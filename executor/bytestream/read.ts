/**
 * ByteStream.Read: streams a stored blob (or a zstd-compressed copy of it) to the client in bounded
 * chunks, honouring read_offset and read_limit and waiting whenever the client reads slowly.
 */
import { blobKey, formatDigest, isEmptyDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { streamOf } from '../../shared/storage/streams.ts';
import type { ReadRequest } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { Code, RpcError } from '../reapi/grpc-status.ts';
import type { Zstd } from '../reapi/zstd.ts';
import { parseReadName } from './resource-name.ts';

/** Largest data chunk per ReadResponse: well under every client's 4 MiB default message limit. */
export const READ_CHUNK_BYTES = 1024 * 1024;

export interface ReadDeps {
  store: BlobStore;
  zstd: Zstd | null;
}

export async function readBlob(
  deps: ReadDeps,
  request: ReadRequest,
  send: (data: Uint8Array) => Promise<void>,
): Promise<void> {
  const resource = parseReadName(request.resourceName);
  const { digest } = resource;
  const offset = Number(request.readOffset);
  const limit = Number(request.readLimit);
  if (limit < 0) throw new LarderError('invalid_argument', `read_limit must not be negative (got ${limit})`);
  if (resource.encoding === 'zstd') {
    if (deps.zstd === null)
      throw new LarderError(
        'invalid_argument',
        'compressed-blobs/zstd is not supported by this server (see GetCapabilities)',
      );
    // REAPI: read_offset counts uncompressed bytes and a compressed read may not set read_limit.
    if (limit !== 0) throw new LarderError('invalid_argument', 'read_limit must be 0 when reading compressed-blobs');
  }
  if (offset < 0 || offset > digest.sizeBytes) {
    throw new RpcError(Code.OUT_OF_RANGE, `read_offset ${offset} is outside the ${digest.sizeBytes}-byte blob`);
  }

  let body: ReadableStream<Uint8Array>;
  const blob = await deps.store.get(blobKey(resource.instance, 'cas', digest.hash));
  if (blob !== null && blob.size === digest.sizeBytes) {
    body = blob.body;
  } else {
    await blob?.body.cancel();
    // The empty blob is always available; a stored size that differs from the digest's is not this blob.
    if (!isEmptyDigest(digest)) {
      throw new LarderError('not_found', `blob ${formatDigest(digest)} not found`);
    }
    body = streamOf(new Uint8Array(0));
  }

  let stream = skip(body, offset);
  if (resource.encoding === 'zstd') stream = stream.pipeThrough(deps.zstd!.compressor());
  await sendChunks(stream, limit === 0 ? Infinity : limit, send);
}

/** Sends the stream in chunks of at most READ_CHUNK_BYTES, stopping after `limit` bytes. */
async function sendChunks(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  send: (data: Uint8Array) => Promise<void>,
): Promise<void> {
  const reader = stream.getReader();
  let left = limit;
  try {
    while (left > 0) {
      const { done, value } = await reader.read();
      if (done) return;
      let chunk = value.byteLength > left ? value.subarray(0, left) : value;
      left -= chunk.byteLength;
      while (chunk.byteLength > 0) {
        await send(chunk.subarray(0, READ_CHUNK_BYTES));
        chunk = chunk.subarray(READ_CHUNK_BYTES);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/**
 * Drops the first `bytes` of a stream. Stores have no ranged reads, so the skipped bytes are read and
 * discarded; resumed downloads are rare enough that this costs little overall.
 */
function skip(stream: ReadableStream<Uint8Array>, bytes: number): ReadableStream<Uint8Array> {
  if (bytes === 0) return stream;
  let left = bytes;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (left >= chunk.byteLength) {
          left -= chunk.byteLength;
          return;
        }
        controller.enqueue(left > 0 ? chunk.subarray(left) : chunk);
        left = 0;
      },
    }),
  );
}
