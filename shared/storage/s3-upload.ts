/**
 * Streams one large blob into S3 as a multipart upload that is completed only after the body has ended
 * cleanly, and aborted otherwise.
 *
 * Why not @aws-sdk/lib-storage's Upload: the whole point here is *when* CompleteMultipartUpload may be sent.
 * The verifier at the top of the store graph errors the body stream at its very end when the SHA-256 is wrong;
 * that error surfaces here as a failed read after the last byte, before `partsOf` yields the final part.
 * So: the last part is never sent for a bad body, Complete is never sent, and the upload is aborted. Nothing
 * is published. A few explicit lines make that guarantee easy to check.
 *
 * Memory: parts are copied into part-sized buffers (known length, and each attempt can resend them); at most
 * `concurrency` parts are in flight plus one being filled. A part's buffer is filled again once its upload has
 * succeeded (every byte sent and acknowledged), so an upload allocates at most `concurrency + 1` of them, however
 * long the blob: a runtime whose collector is slow to free large buffers (Bun) does not hold a blob's worth.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CreateMultipartUploadCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { isLarderError } from '../errors.ts';
import { bodyError } from './streams.ts';

/** Sends one command with the store's deadline and error mapping; see S3Store. */
export type Send = <T>(command: object, what: string) => Promise<T>;

export interface MultipartOptions {
  send: Send;
  bucket: string;
  key: string;
  body: ReadableStream<Uint8Array>;
  partBytes: number;
  concurrency: number;
  /** For messages: "PUT cas/1f2e…". */
  what: string;
}

export async function putMultipart(o: MultipartOptions): Promise<void> {
  const created = await o
    .send<{ UploadId?: string }>(
      new CreateMultipartUploadCommand({ Bucket: o.bucket, Key: o.key }),
      `${o.what}: start multipart upload`,
    )
    .catch(async (err: unknown) => {
      await o.body.cancel().catch(() => {});
      throw err;
    });
  const target = { Bucket: o.bucket, Key: o.key, UploadId: created.UploadId! };
  const parts: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | null = null;
  try {
    let partNumber = 0;
    const spare: Uint8Array[] = [];
    for await (const part of partsOf(o.body, o.partBytes, spare)) {
      if (failure) break;
      const number = ++partNumber;
      const upload = uploadPart(o, { ...target, PartNumber: number }, part).then(
        (etag) => {
          parts[number - 1] = { PartNumber: number, ETag: etag };
          // Sent and acknowledged: nothing reads the buffer any more. (A failed part's is left to the collector:
          // an attempt that timed out may still be writing from it.)
          spare.push(part);
        },
        (error: unknown) => {
          failure ??= { error };
        },
      );
      inFlight.add(upload);
      void upload.finally(() => inFlight.delete(upload));
      if (inFlight.size >= o.concurrency) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure) throw (failure as { error: unknown }).error;
    // Only reachable when the body ended without error: every byte is in, and the verifier above is satisfied.
    await o.send(
      new CompleteMultipartUploadCommand({ ...target, MultipartUpload: { Parts: parts } }),
      `${o.what}: complete multipart upload`,
    );
  } catch (err) {
    await Promise.allSettled(inFlight);
    // Best effort: what an abort cannot remove, a bucket lifecycle rule (AbortIncompleteMultipartUpload) does.
    await o.send(new AbortMultipartUploadCommand(target), `${o.what}: abort multipart upload`).catch(() => {});
    throw err;
  }
}

/**
 * One part, with a Uint8Array body the SDK can retry. Except on Deno: its fetch copies a Uint8Array body and the
 * copies wait for a GC, which cost ~60 MiB more per 256 MiB upload in our flat-memory test, while a one-chunk
 * stream goes out without a copy. The SDK does not retry stream bodies, so those attempts are retried here,
 * with the same jittered backoff, and only for transient failures.
 */
async function uploadPart(
  o: MultipartOptions,
  target: { Bucket: string; Key: string; UploadId: string; PartNumber: number },
  part: Uint8Array,
): Promise<string> {
  const streamed = 'Deno' in globalThis;
  const what = `${o.what}: part ${target.PartNumber}`;
  for (let attempt = 1; ; attempt++) {
    const body = streamed
      ? new ReadableStream({
          start: (c) => {
            c.enqueue(part);
            c.close();
          },
        })
      : part;
    try {
      const result = await o.send<{ ETag?: string }>(
        new UploadPartCommand({ ...target, Body: body as Uint8Array, ContentLength: part.byteLength }),
        what,
      );
      return result.ETag!;
    } catch (err) {
      const transient = isLarderError(err, 'unavailable') || isLarderError(err, 'timeout');
      if (!streamed || !transient || attempt === 3) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 100 * 2 ** attempt));
    }
  }
}

/**
 * Re-chunks a body into `partBytes`-sized buffers (the last one shorter), taken from `spare` when it has one.
 * Body errors become LarderErrors.
 */
async function* partsOf(
  body: ReadableStream<Uint8Array>,
  partBytes: number,
  spare: Uint8Array[],
): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  const fresh = () => spare.pop() ?? new Uint8Array(partBytes);
  let part = fresh();
  let filled = 0;
  let done = false;
  try {
    for (;;) {
      const next = await reader.read().catch((err: unknown) => Promise.reject(bodyError(err)));
      if (next.done) break;
      let chunk = next.value;
      while (chunk.byteLength > 0) {
        const take = Math.min(chunk.byteLength, partBytes - filled);
        part.set(chunk.subarray(0, take), filled);
        filled += take;
        chunk = chunk.subarray(take);
        if (filled === partBytes) {
          yield part;
          part = fresh();
          filled = 0;
        }
      }
    }
    done = true;
    if (filled > 0) yield part.subarray(0, filled);
  } finally {
    // Stopped early (an upload failed, or the body broke): let the body's source know.
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
