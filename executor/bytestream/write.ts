/**
 * ByteStream.Write: the request stream becomes one ReadableStream that goes straight into `store.put`,
 * so a large blob is never held in memory; the store's verifying wrapper checks size and SHA-256 as the
 * bytes pass, and publishes nothing if they are wrong. Bytes of large uploads are also recorded in the
 * partial-upload area, so an interrupted Write can be resumed from QueryWriteStatus's committed size; with a
 * disk store that recording is the only copy written, and the store adopts the file (storeByAdopting).
 */
import { rm } from 'node:fs/promises';
import { type BlobKey, blobKey, formatKey } from '../../shared/digest.ts';
import { isLarderError, LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import type { WriteRequest } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { handBack } from '../grpc/lent-frames.ts';
import { Code, RpcError } from '../reapi/grpc-status.ts';
import type { Zstd } from '../reapi/zstd.ts';
import { fileSlice, type PartialUploads, type Recorder } from './partial-uploads.ts';
import { parseWriteName, type UploadResource } from './resource-name.ts';

/** How long a Write waits for an earlier, dying Write of the same upload name to let go. */
const SETTLE_MS = 2000;

export interface WriteDeps {
  store: BlobStore;
  log: Logger;
  uploads: PartialUploads;
  zstd: Zstd | null;
  maxBlobBytes: number;
}

/**
 * Stores one uploaded blob and returns the committed size (bytes received on the wire, offset included), or
 * answers at once for a blob already stored.
 */
export async function writeBlob(
  deps: WriteDeps,
  requests: AsyncIterable<WriteRequest>,
  signal: AbortSignal,
): Promise<bigint> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await next(iterator, signal);
  if (first === null) throw new LarderError('invalid_argument', 'Write: the stream ended before its first request');
  const name = first.resourceName;
  const resource = parseWriteName(name);
  checkWritable(deps, resource);

  const offset = Number(first.writeOffset);
  if (!(await deps.uploads.settle(name, SETTLE_MS))) {
    throw new RpcError(Code.ABORTED, `Write: another upload to ${name} is in progress`);
  }
  const key = blobKey(resource.instance, 'cas', resource.digest.hash);
  if (offset === 0 && (await deps.store.stat(key)) === resource.digest.sizeBytes) {
    // REAPI lets the server end an upload of a blob it already has at once: the client stops sending, and
    // nothing is received, hashed or written again (Bazel re-uploads outputs it just downloaded). The
    // committed size is the whole blob, or -1 for a compressed upload, whose compressed length is unknown.
    await iterator.return?.();
    deps.log.debug('ByteStream: already stored', { key: formatKey(key) });
    return resource.encoding === 'identity' ? BigInt(resource.digest.sizeBytes) : -1n;
  }
  if (offset !== 0) {
    // Only uncompressed uploads resume: for compressed ones REAPI mixes compressed and uncompressed
    // offsets, so QueryWriteStatus reports 0 for them and clients start over.
    const kept = resource.encoding === 'identity' ? deps.uploads.committed(name) : 0;
    if (offset !== kept || kept === 0) {
      throw new LarderError(
        'invalid_argument',
        `Write: write_offset ${offset} does not match the committed size ${kept} of ${name}`,
      );
    }
  }
  const recorder =
    resource.encoding === 'identity' ? await deps.uploads.begin(name, resource.digest.sizeBytes, offset) : null;

  let received = offset;
  let endedEarly = false;
  let pending: WriteRequest | null = first;
  const incoming = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const request = pending ?? (await next(iterator, signal));
      pending = null;
      if (request === null) {
        endedEarly = true;
        throw new LarderError(
          'invalid_argument',
          `Write: the stream ended after ${received} bytes without finish_write; resume with write_offset ${received}`,
        );
      }
      if (request !== first) checkFollowing(request, name, received);
      if (request.data.byteLength > 0) {
        await recorder?.append(request.data);
        received += request.data.byteLength;
        controller.enqueue(request.data);
      }
      if (request.finishWrite) controller.close();
    },
    async cancel() {
      await iterator.return?.();
    },
  });

  const size = resource.digest.sizeBytes;
  try {
    if (recorder !== null && deps.store.adopt !== undefined) {
      await storeByAdopting(deps.store, key, size, incoming, recorder);
    } else {
      const wire =
        recorder !== null && recorder.resumedFrom > 0 ? concatStreams(recorder.readKept(), incoming) : incoming;
      const body = resource.encoding === 'zstd' ? wire.pipeThrough(deps.zstd!.decompressor(size)) : wire;
      await deps.store.put(key, body, size);
    }
  } catch (err) {
    // A client that went away may come back and resume; wrong bytes can never be resumed.
    if (endedEarly || isLarderError(err, 'aborted') || signal.aborted) await recorder?.keep();
    else await recorder?.discard();
    throw err;
  }
  await recorder?.discard();
  await drainAfterFinish(iterator, signal);
  deps.log.debug('stored via ByteStream', {
    key: formatKey(key),
    size: resource.digest.sizeBytes,
    encoding: resource.encoding,
  });
  return BigInt(received);
}

/**
 * The one-write path, for a store that adopts files (disk): the bytes go only into the recorder's file,
 * which keeps them for resuming anyway, hashed as they arrive; at finish_write that file is synced and moved
 * into the store. Otherwise every upload of 1 MiB or more would be written twice: once here, once by the store.
 */
async function storeByAdopting(
  store: BlobStore,
  key: BlobKey,
  size: number,
  incoming: ReadableStream<Uint8Array>,
  recorder: Recorder,
): Promise<void> {
  // A file system full below the store's budget: the store evicts for the rest of the blob, as its own uploads do.
  await recorder.pin(
    store.evictForFullDisk === undefined ? undefined : (written) => store.evictForFullDisk!(size - written),
  );
  let total = recorder.resumedFrom;
  for await (const chunk of incoming) {
    total += chunk.byteLength;
    // `incoming` enqueues a message's data only once the recorder has written and hashed it, and nothing else reads
    // it: its memory can take a later message of this call (lent-frames.ts), instead of a fresh megabyte each.
    handBack(chunk);
    if (total > size) throw new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received more`);
  }
  if (total !== size)
    throw new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received ${total}`);
  const file = await recorder.complete();
  try {
    // A store on another file system declines; then it copies, as for any other store.
    if (!(await store.adopt!(key, file.path, size, file.sha256)))
      await store.put(key, fileSlice(file.path, size), size);
  } finally {
    await rm(file.path, { force: true });
  }
}

function checkWritable(deps: WriteDeps, resource: UploadResource): void {
  if (resource.encoding === 'zstd' && deps.zstd === null) {
    throw new LarderError(
      'invalid_argument',
      'compressed-blobs/zstd is not supported by this server (see GetCapabilities)',
    );
  }
  if (resource.digest.sizeBytes > deps.maxBlobBytes) {
    throw new LarderError(
      'too_large',
      `blob of ${resource.digest.sizeBytes} bytes exceeds the ${deps.maxBlobBytes}-byte limit`,
    );
  }
}

function checkFollowing(request: WriteRequest, name: string, received: number): void {
  if (request.resourceName !== '' && request.resourceName !== name) {
    throw new LarderError('invalid_argument', 'Write: resource_name changed in the middle of the stream');
  }
  if (Number(request.writeOffset) !== received) {
    throw new LarderError(
      'invalid_argument',
      `Write: write_offset ${request.writeOffset} where ${received} was expected`,
    );
  }
}

/** The next request, or null at the end of the stream; rejects when the call is cancelled. */
async function next(iterator: AsyncIterator<WriteRequest>, signal: AbortSignal): Promise<WriteRequest | null> {
  if (signal.aborted) throw signal.reason;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const result = await Promise.race([iterator.next(), aborted]);
    return result.done ? null : result.value;
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

/** After finish_write the client half-closes; anything more is a protocol error. */
async function drainAfterFinish(iterator: AsyncIterator<WriteRequest>, signal: AbortSignal): Promise<void> {
  const extra = await next(iterator, signal);
  if (extra !== null) {
    await iterator.return?.();
    throw new LarderError('invalid_argument', 'Write: requests after finish_write');
  }
}

function concatStreams(...streams: ReadableStream<Uint8Array>[]): ReadableStream<Uint8Array> {
  let index = 0;
  let reader = streams[0]!.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const { done, value } = await reader.read();
        if (!done) return controller.enqueue(value);
        if (++index >= streams.length) return controller.close();
        reader = streams[index]!.getReader();
      }
    },
    async cancel(reason) {
      await Promise.all(streams.slice(index).map((s, i) => (i === 0 ? reader.cancel(reason) : s.cancel(reason))));
    },
  });
}
