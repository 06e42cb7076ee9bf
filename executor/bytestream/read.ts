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
import type { Send } from '../grpc/adapt.ts';
import { FRAME_HEADROOM, bytesWithHeadroom } from '../grpc/bytes-message.ts';
import { parseReadName } from './resource-name.ts';

/** Largest data chunk per ReadResponse: well under every client's 4 MiB default message limit. */
export const READ_CHUNK_BYTES = 1024 * 1024;

export interface ReadDeps {
  store: BlobStore;
  zstd: Zstd | null;
}

export async function readBlob(deps: ReadDeps, request: ReadRequest, send: Send<Uint8Array>): Promise<void> {
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

  const wanted = limit === 0 ? Infinity : limit;
  if (offset === 0 && resource.encoding === 'identity' && byteStream(body)) {
    await sendInPlace(body, Math.min(wanted, digest.sizeBytes), send);
    return;
  }
  let stream = skip(body, offset);
  if (resource.encoding === 'zstd') stream = stream.pipeThrough(deps.zstd!.compressor());
  await sendChunks(stream, wanted, send);
}

/** Whether a BYOB reader can read the stream (a file's, from the disk store: see disk-files.ts fileStream). */
function byteStream(body: ReadableStream<Uint8Array>): boolean {
  try {
    body.getReader({ mode: 'byob' }).releaseLock();
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends `bytes` of a byte stream read straight into each message's buffer (at most READ_CHUNK_BYTES), with room in
 * front for the gRPC prefix and the field's key and length, so the message is encoded and framed in that memory
 * (bytes-message.ts, in-place-frames.ts): no copy, and no new megabyte per message for the garbage collector.
 * A buffer is reused once its message has been written out, not before: grpc-js may queue several messages before
 * it writes them. So a long Read allocates a few buffers, not one per megabyte; how many stay in flight is bounded
 * by `send`, which waits while the client is slow.
 */
async function sendInPlace(body: ReadableStream<Uint8Array>, bytes: number, send: Send<Uint8Array>): Promise<void> {
  const reader = body.getReader({ mode: 'byob' });
  /** Buffers whose messages are written, free for the next chunk; each as large as the first chunk. */
  const first = Math.min(bytes, READ_CHUNK_BYTES);
  const free: ArrayBuffer[] = [];
  let left = bytes;
  try {
    while (left > 0) {
      const length = Math.min(left, READ_CHUNK_BYTES);
      // Not from Buffer's shared pool: a BYOB read takes the whole ArrayBuffer over.
      let buffer = free.pop() ?? (Buffer.allocUnsafeSlow(FRAME_HEADROOM + first).buffer as ArrayBuffer);
      let filled = 0;
      while (filled < length) {
        const view = new Uint8Array(buffer, FRAME_HEADROOM + filled, length - filled);
        const { done, value } = await reader.read(view);
        if (value !== undefined) buffer = value.buffer as ArrayBuffer; // the read took the buffer over and hands it back
        if (done || value === undefined) throw new LarderError('internal', 'blob ended before its size');
        filled += value.byteLength;
      }
      left -= length;
      const full = buffer;
      await send(bytesWithHeadroom(new Uint8Array(full), length), () => free.push(full));
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Sends the stream in chunks of at most READ_CHUNK_BYTES, stopping after `limit` bytes. */
async function sendChunks(stream: ReadableStream<Uint8Array>, limit: number, send: Send<Uint8Array>): Promise<void> {
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
