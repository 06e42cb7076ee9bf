// The hand-written codec for lists of digests decodes and encodes exactly what protobuf-es does, and leaves every
// message it does not take to protobuf-es.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { digestListDecoder, digestListEncoder } from '../../../executor/grpc/digest-lists.ts';
import {
  BatchUpdateBlobsRequestSchema,
  DigestFunction_Value,
  FindMissingBlobsRequestSchema,
  FindMissingBlobsResponseSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { randomBytes } from '../helpers.ts';

const hex = (seed: number) => Buffer.from(randomBytes(32, seed)).toString('hex');
const SIZES = [0n, 1n, 127n, 128n, 16_384n, 2n ** 31n, 2n ** 48n, 2n ** 49n, 2n ** 62n, -1n];
const digests = SIZES.flatMap((sizeBytes, i) => [
  { hash: hex(i + 1), sizeBytes },
  { hash: '', sizeBytes },
  { hash: 'é-not-ascii', sizeBytes },
]);

describe('digestListDecoder', () => {
  const decode = digestListDecoder(FindMissingBlobsRequestSchema)!;

  it('decodes FindMissingBlobsRequest like protobuf-es, sizes from 0 to 2^62 and negative, any hash', () => {
    for (const request of [
      {},
      { instanceName: 'main/linux', digestFunction: DigestFunction_Value.SHA256, blobDigests: digests },
      { instanceName: 'ünïcode', blobDigests: digests.slice(0, 3) },
      { digestFunction: -1 as DigestFunction_Value, blobDigests: [{}] },
    ]) {
      const bytes = toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, request));
      expect(decode(bytes)).toEqual(fromBinary(FindMissingBlobsRequestSchema, bytes));
    }
  });

  it('gives messages with unknown fields to protobuf-es, and refuses what protobuf-es refuses', () => {
    const known = toBinary(
      FindMissingBlobsRequestSchema,
      create(FindMissingBlobsRequestSchema, { blobDigests: digests }),
    );
    const unknown = Buffer.concat([known, Buffer.from([(9 << 3) | 0, 1])]);
    expect(decode(unknown)).toEqual(fromBinary(FindMissingBlobsRequestSchema, unknown));
    const truncated = known.subarray(0, known.length - 3);
    expect(() => fromBinary(FindMissingBlobsRequestSchema, truncated)).toThrow();
    expect(() => decode(truncated)).toThrow();
  });

  it('is only used for messages of strings, enums and lists of digests', () => {
    expect(digestListDecoder(BatchUpdateBlobsRequestSchema)).toBeNull();
  });
});

describe('digestListEncoder', () => {
  const encode = digestListEncoder(FindMissingBlobsResponseSchema)!;

  it('encodes FindMissingBlobsResponse byte for byte like protobuf-es', () => {
    for (const missingBlobDigests of [[], digests, digests.slice(0, 1)]) {
      const message = create(FindMissingBlobsResponseSchema, { missingBlobDigests });
      const expected = Buffer.from(toBinary(FindMissingBlobsResponseSchema, message));
      expect(Buffer.compare(encode(message), expected)).toBe(0);
    }
  });

  it('is only used for messages of lists of digests', () => {
    expect(digestListEncoder(FindMissingBlobsRequestSchema)).toBeNull();
  });
});
