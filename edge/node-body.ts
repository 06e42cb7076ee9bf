/**
 * The Node edge's body receiver (bodies.ts): whole bodies are read straight from the socket's IncomingMessage,
 * chunk by chunk into one buffer, without the Request object, its AbortSignal and the web streams that
 * @hono/node-server would build for `request.body`; larger bodies stream from the socket with one adapter
 * (Readable.toWeb) instead of two. It moves bytes only: the app has already parsed, authorised and size-checked
 * the request before it asks.
 */
import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { LarderError } from '../shared/errors.ts';
import { bodyError, collect } from '../shared/storage/streams.ts';
import { type BlobSender, type BodyReceiver, webBodies, webSender, WholeBodies } from './bodies.ts';

export function nodeBodies(whole = new WholeBodies()): BodyReceiver {
  const fallback = webBodies(whole);
  return async function nodeBodies(request, env, size, use) {
    // @hono/node-server passes { incoming, outgoing } as the app's env; anything else (app.request() in tests) is web.
    const incoming = (env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (incoming === undefined || incoming.readableDidRead) return fallback(request, env, size, use);
    if (await whole.hold(size, () => readIncoming(incoming, size), use)) return;
    await use(Readable.toWeb(incoming) as ReadableStream<Uint8Array>);
  };
}

/**
 * The Node edge's blob sender: a stored blob of up to WHOLE_BODY_MAX that the store streams (a file) is read whole
 * first, so @hono/node-server sends headers and body in one write (a streamed response flushes its headers on their
 * own, then writes chunk by chunk). The bytes count against the same budget as whole uploads until the response
 * is done with them.
 */
export function nodeSender(whole = new WholeBodies()): BlobSender {
  return async function nodeSender(env, blob, headers) {
    const outgoing = (env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    if (blob.bytes !== undefined || outgoing === undefined || !whole.take(blob.size))
      return webSender(env, blob, headers);
    outgoing.once('close', () => whole.give(blob.size));
    const bytes = await collect(blob.body, blob.size);
    return webSender(env, { size: blob.size, body: blob.body, bytes }, headers);
  };
}

/** All `size` bytes of the request body, or an 'aborted' error if the client goes away first. */
export function readIncoming(incoming: IncomingMessage, size: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const done = (err?: LarderError) => {
      incoming.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (err !== undefined) return reject(err);
      if (received !== size)
        return reject(new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received ${received}`));
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.byteLength;
    };
    const onEnd = () => done();
    const onError = (err: Error) => done(bodyError(err));
    // 'close' before 'end': the connection went away mid-body (Node also emits 'error', but not in every version).
    const onClose = () => done(bodyError(new Error('the client closed the connection mid-body')));
    incoming.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}
