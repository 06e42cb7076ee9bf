// The hand-written encoder for single-bytes-field messages writes exactly what protobuf-es writes.
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import {
  bytesWithHeadroom,
  FRAME_HEADROOM,
  frameInPlace,
  singleBytesEncoder,
} from '../../../executor/grpc/bytes-message.ts';
import { ReadResponseSchema, WriteRequestSchema } from '../../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { randomBytes } from '../helpers.ts';

describe('singleBytesEncoder', () => {
  const encode = singleBytesEncoder(ReadResponseSchema)!;

  it('encodes ReadResponse byte for byte like protobuf-es, from empty to 1 MiB (two- and three-byte lengths)', () => {
    for (const size of [0, 1, 127, 128, 300, 16_383, 16_384, 65_536, 1024 * 1024]) {
      const data = randomBytes(size, size + 1);
      const expected = toBinary(ReadResponseSchema, create(ReadResponseSchema, { data }));
      expect(Buffer.compare(encode({ data }), Buffer.from(expected)), `size ${size}`).toBe(0);
    }
  });

  it("encodes data given with headroom in place: the same bytes, in the data's own memory, not a copy", () => {
    for (const size of [1, 127, 128, 16_384, 1024 * 1024]) {
      const data = randomBytes(size, size + 2);
      const buffer = new Uint8Array(FRAME_HEADROOM + size);
      buffer.set(data, FRAME_HEADROOM);
      const framed = bytesWithHeadroom(buffer, size);
      const expected = toBinary(ReadResponseSchema, create(ReadResponseSchema, { data }));
      const encoded = encode({ data: framed });
      expect(Buffer.compare(encoded, Buffer.from(expected)), `size ${size}`).toBe(0);
      expect(encoded.buffer).toBe(buffer.buffer);
    }
  });

  it('copies data that has no headroom of its own, and leaves the memory around it alone', () => {
    const whole = randomBytes(64, 3);
    const before = Buffer.from(whole);
    const encoded = encode({ data: whole.subarray(16, 32) });
    expect(encoded.buffer).not.toBe(whole.buffer);
    expect(Buffer.compare(Buffer.from(whole), before)).toBe(0);
  });

  it('is only used for messages of one bytes field', () => {
    expect(singleBytesEncoder(WriteRequestSchema)).toBeNull();
  });
});

describe('frameInPlace', () => {
  const encode = singleBytesEncoder(ReadResponseSchema)!;

  it('writes the gRPC prefix in front of a message encoded in place: the whole frame in the data’s own memory', () => {
    for (const size of [1, 127, 128, 16_384, 1024 * 1024]) {
      const data = randomBytes(size, size + 4);
      const buffer = new Uint8Array(FRAME_HEADROOM + size);
      buffer.set(data, FRAME_HEADROOM);
      const message = encode({ data: bytesWithHeadroom(buffer, size) });
      const expected = Buffer.from(toBinary(ReadResponseSchema, create(ReadResponseSchema, { data })));
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(expected.byteLength, 1);
      const frame = frameInPlace(message);
      expect(frame?.buffer).toBe(buffer.buffer);
      expect(Buffer.compare(frame!, Buffer.concat([prefix, expected])), `size ${size}`).toBe(0);
    }
  });

  it('leaves a message without room in front of it to be copied', () => {
    expect(frameInPlace(encode({ data: randomBytes(100, 5) }))).toBeNull();
    expect(frameInPlace(Buffer.alloc(10))).toBeNull();
  });
});
