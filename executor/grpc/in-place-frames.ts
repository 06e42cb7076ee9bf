/**
 * Lets grpc-js servers send a message framed in place (bytes-message.ts frameInPlace) instead of copying it into a
 * frame of its own.
 *
 * grpc-js frames every reply by allocating a buffer of the message's size plus 5 and copying the message into it.
 * For ByteStream Read that is a fresh megabyte per message, and on V8 every 64 MiB or so of such allocations starts a
 * full mark-compact of the executor's heap: over 40% of a 64 MiB Read's CPU went to major garbage collection (perf
 * on the executor, issue 21). So the server's framing method is wrapped once: a message whose encoder left room for
 * the prefix in front of it goes out as that memory; any other is framed as grpc-js frames it. The sender keeps the
 * memory unchanged until the write's callback (adapt.ts `send`'s `written`).
 *
 * It reaches into grpc-js's BaseServerInterceptingCall (1.14, server-interceptors.js). If a later grpc-js moves it,
 * nothing breaks: messages are copied as before, and this returns false
 * (test/executor/grpc/in-place-frames.test.ts checks that a served frame is the sender's memory).
 */
import { frameInPlace } from './bytes-message.ts';
import { wrapGrpcJsMethod } from './grpc-js-internals.ts';

interface FramingCall {
  handler: { serialize(value: unknown): Buffer };
  serializeMessage(value: unknown): Buffer;
}

/** Wraps grpc-js's server framing once per process; returns whether it could. */
export function allowInPlaceFrames(): boolean {
  return wrapGrpcJsMethod(
    'server-interceptors.js',
    'BaseServerInterceptingCall',
    'serializeMessage',
    () =>
      function serializeMessage(this: FramingCall, value: unknown): Buffer {
        const message = this.handler.serialize(value);
        const inPlace = frameInPlace(message);
        if (inPlace !== null) return inPlace;
        // As grpc-js frames it: an uncompressed flag, the length, the message.
        const frame = Buffer.allocUnsafe(message.byteLength + 5);
        frame.writeUInt8(0, 0);
        frame.writeUInt32BE(message.byteLength, 1);
        frame.set(message, 5);
        return frame;
      },
  );
}
