/** Small stream helpers every store needs: whole-buffer streams, draining, and bounded collection. */
import { LarderError } from '../errors.ts';
import type { BlobBody, StoredBlob } from './store.ts';

export function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** An upload's body as a stream, for stores that only stream (bytes in hand become a one-chunk stream). */
export function bodyStream(body: BlobBody): ReadableStream<Uint8Array> {
  return body instanceof Uint8Array ? streamOf(body) : body;
}

/** A StoredBlob for bytes already in memory; its body stream is made only if someone asks for it. */
export function bytesBlob(bytes: Uint8Array): StoredBlob {
  return {
    size: bytes.byteLength,
    bytes,
    get body() {
      return streamOf(bytes);
    },
  };
}

/** Reads a stored blob whole: its bytes when the store has them, else its stream (bounded by `limit`). */
export function readWhole(blob: StoredBlob, limit: number): Promise<Uint8Array> {
  if (blob.bytes !== undefined) {
    if (blob.bytes.byteLength > limit)
      return Promise.reject(new LarderError('too_large', `blob exceeds the ${limit}-byte limit for buffered reads`));
    return Promise.resolve(blob.bytes);
  }
  return collect(blob.body, limit);
}

/** Reads a stream to its end, discarding the bytes (errors still propagate). */
export async function drain(body: ReadableStream<Uint8Array>): Promise<void> {
  const reader = body.getReader();
  for (;;) {
    const { done } = await reader.read();
    if (done) return;
  }
}

/** Reads a whole stream into memory, refusing more than `limit` bytes. Only for small blobs (AC entries, trees). */
export async function collect(body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > limit) {
      await reader.cancel();
      throw new LarderError('too_large', `blob exceeds the ${limit}-byte limit for buffered reads`);
    }
    chunks.push(value);
  }
  return concat(chunks, length);
}

export function concat(chunks: Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** A body that fails without saying why is a client that went away mid-upload. */
export function bodyError(err: unknown): LarderError {
  if (err instanceof LarderError) return err;
  return new LarderError('aborted', `upload interrupted: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
