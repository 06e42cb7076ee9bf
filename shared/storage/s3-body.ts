/**
 * An S3 object body as the web stream a BlobStore hands out, read with backpressure (one chunk per pull) and an
 * idle limit: when S3 sends nothing for `idleMs` while the consumer waits, the stream errors with 'timeout'
 * instead of hanging. (Node's handler has a socket idle timeout as well; Deno's fetch has none, so this is the
 * one that counts there.)
 *
 * The SDK gives a ReadableStream with the fetch handler (Deno) and a Node Readable with node:http; both are
 * read through one `next()`.
 */
import { LarderError } from '../errors.ts';
import { s3Error } from './s3-errors.ts';

export function objectBody(body: unknown, what: string, idleMs: number): ReadableStream<Uint8Array> {
  if (body === undefined || body === null) return new ReadableStream({ start: (c) => c.close() });
  let next: () => Promise<IteratorResult<Uint8Array>>;
  let stop: () => Promise<unknown>;
  if (body instanceof ReadableStream) {
    const reader = (body as ReadableStream<Uint8Array>).getReader();
    next = () => reader.read() as Promise<IteratorResult<Uint8Array>>;
    stop = () => reader.cancel();
  } else {
    const iterator = (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    next = () => iterator.next();
    stop = () => iterator.return?.() ?? Promise.resolve();
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const idle = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new LarderError('timeout', `s3: ${what}: no data for ${idleMs} ms while reading the body`)),
            idleMs,
          );
        });
        try {
          const chunk = await Promise.race([next(), idle]);
          if (chunk.done) controller.close();
          else controller.enqueue(new Uint8Array(chunk.value.buffer, chunk.value.byteOffset, chunk.value.byteLength));
        } catch (err) {
          // Not awaited: a source stuck in a read may never acknowledge, and the caller must hear now.
          void stop().catch(() => {});
          controller.error(s3Error(err, `${what}: reading the body`, false));
        } finally {
          clearTimeout(timer);
        }
      },
      cancel() {
        void stop().catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
