// The hand-written encoder for single-bytes-field messages writes exactly what protobuf-es writes.
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { singleBytesEncoder } from '../../../executor/grpc/bytes-message.ts';
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

  it('is only used for messages of one bytes field', () => {
    expect(singleBytesEncoder(WriteRequestSchema)).toBeNull();
  });
});
