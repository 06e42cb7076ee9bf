// grpc-js frames a reply encoded in place as the sender's own memory (executor/grpc/in-place-frames.ts reaches into
// grpc-js for that). This fails if a grpc-js update stops it from working: every Read message would be copied again.
import { create, toBinary } from '@bufbuild/protobuf';
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors.js';
import { expect, it } from 'vitest';
import { bytesWithHeadroom, FRAME_HEADROOM, singleBytesEncoder } from '../../../executor/grpc/bytes-message.ts';
import { allowInPlaceFrames } from '../../../executor/grpc/in-place-frames.ts';
import { ReadResponseSchema } from '../../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { randomBytes } from '../helpers.ts';

/** What grpc-js sends for a ReadResponse of `data`: the uncompressed flag, the length, the message. */
function frameOf(data: Uint8Array): Buffer {
  const message = Buffer.from(toBinary(ReadResponseSchema, create(ReadResponseSchema, { data })));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([prefix, message]);
}

it('frames a reply encoded in place as its own memory, and any other reply as grpc-js frames it', () => {
  expect(allowInPlaceFrames()).toBe(true);
  expect(allowInPlaceFrames()).toBe(true); // once per process, however often asked
  // A server call as grpc-js makes it, with the serializer adapt.ts gives ReadResponse.
  const call = Object.create(BaseServerInterceptingCall.prototype) as { serializeMessage(value: unknown): Buffer };
  Object.assign(call, { handler: { serialize: singleBytesEncoder(ReadResponseSchema)! } });

  const data = randomBytes(1024 * 1024, 21);
  const buffer = new Uint8Array(FRAME_HEADROOM + data.byteLength);
  buffer.set(data, FRAME_HEADROOM);
  const inPlace = call.serializeMessage({ data: bytesWithHeadroom(buffer, data.byteLength) });
  expect(inPlace.buffer).toBe(buffer.buffer);
  expect(Buffer.compare(inPlace, frameOf(data))).toBe(0);

  const plain = randomBytes(300, 22);
  const copied = call.serializeMessage({ data: plain });
  expect(copied.buffer).not.toBe(plain.buffer);
  expect(Buffer.compare(copied, frameOf(plain))).toBe(0);
});
