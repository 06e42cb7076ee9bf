/**
 * The Bun edge's body receiver and blob sender (bodies.ts). Downloads of blobs the store keeps in a file are
 * sent as `Bun.file(path)`, which Bun writes to the socket with sendfile(2): no copy of the bytes passes through
 * JavaScript. Whole uploads are taken with `Request.arrayBuffer()`, which Bun fills natively in one buffer (on
 * Bun it frees that memory again once used; Deno's did not, see webBodies). They move bytes only: the app has
 * already parsed, authorised and size-checked the request before it asks.
 */
import { LarderError } from '../shared/errors.ts';
import type { BlobBody } from '../shared/storage/store.ts';
import { bodyError, collect, streamOf } from '../shared/storage/streams.ts';
import { type BlobSender, type BodyReceiver, type FileSender, webSender, WholeBodies } from './bodies.ts';

declare const Bun: { file(path: string, options?: { type: string }): Blob };

/**
 * `release`: the store is done with an upload's bytes once its put resolves (a disk store: written and synced), so
 * their buffer is freed right then, not at some later collection. By then the allocator has handed a buffer left for
 * the collector back to the kernel, and the next upload's buffer is faulted in afresh, page by page: freed at once,
 * it is reused while its pages are still mapped. For 1 MiB uploads to a disk store (8 at a time, Bun pinned to one
 * core) that cut the page faults per upload from ~190 to ~80 and ~0.5 ms of CPU from ~4.7 (harness runs on a busy
 * machine). Never for a store that may keep the bytes it is handed (a memory tier keeps them as they are).
 */
export function bunBodies(whole = new WholeBodies(), release = false): BodyReceiver {
  return async function bunBodies(request, _env, size, use) {
    const read = async () => {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await request.arrayBuffer());
      } catch (err) {
        throw bodyError(err);
      }
      if (bytes.byteLength !== size)
        throw new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received ${bytes.byteLength}`);
      return bytes;
    };
    const useThenRelease = async (body: BlobBody) => {
      await use(body);
      if (body instanceof Uint8Array) free(body);
    };
    if (await whole.hold(size, read, release ? useThenRelease : use)) return;
    await use(request.body ?? streamOf(new Uint8Array(0)));
  };
}

/** Frees a buffer now: transferring it to a new one of length 0 detaches it and lets its memory go. */
function free(bytes: Uint8Array): void {
  (bytes.buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
}

/**
 * A blob in a file goes out as that file (sendfile); bytes in hand go out as they are. The store's own stream
 * is cancelled, which closes its handle: Bun opens the file again by its path when it sends it. A CAS file is
 * never rewritten with other bytes, so the path names the same bytes; one evicted in between fails Bun's open,
 * which the entry's error handler answers as the miss it now is (bun.ts).
 *
 * Any other stream (an S3 object) Bun sends chunked, dropping the Content-Length the app set: one of up to
 * WHOLE_BODY_MAX is read whole first so that it keeps it; larger ones go out chunked. Bun tells the app nothing
 * when a response is done, so the budget counts these bytes while they are read, not while they are sent.
 */
export function bunSender(whole = new WholeBodies()): BlobSender {
  return async function bunSender(env, blob, headers) {
    if (blob.bytes !== undefined) return webSender(env, blob, headers);
    if (blob.path !== undefined) {
      await blob.body.cancel();
      return new Response(Bun.file(blob.path), { headers });
    }
    if (!whole.take(blob.size)) return webSender(env, blob, headers);
    try {
      const bytes = await collect(blob.body, blob.size);
      return webSender(env, { size: blob.size, body: blob.body, bytes }, headers);
    } finally {
      whole.give(blob.size);
    }
  };
}

/**
 * A blob the store located in a file (BlobStore.locate) goes out as that file without the store opening it first:
 * Bun opens it once, to send it, and writes its Content-Length from the open file. One evicted meanwhile fails that
 * open, answered as a miss (bun.ts).
 */
export const bunFileSender: FileSender = (file) => new Response(Bun.file(file.path, BLOB_FILE));

const BLOB_FILE = { type: 'application/octet-stream' };
