// The hand-written codec for lists of digests decodes and encodes exactly what protobuf-es does, and leaves every
// message it does not take to protobuf-es.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { frameInPlace } from '../../../executor/grpc/bytes-message.ts';
import { chosenDigests, digestColumns } from '../../../executor/grpc/digest-columns.ts';
import { digestListDecoder, digestListEncoder } from '../../../executor/grpc/digest-lists.ts';
import { deepFreeze } from '../../../executor/grpc/reused-replies.ts';
import {
  BatchReadBlobsRequestSchema,
  BatchUpdateBlobsRequestSchema,
  Compressor_Value,
  DigestFunction_Value,
  DigestSchema,
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

  it('decodes BatchReadBlobsRequest like protobuf-es, its compressors packed (as protobuf-es writes them) or not', () => {
    const batchRead = digestListDecoder(BatchReadBlobsRequestSchema)!;
    expect(batchRead).not.toBeNull();
    for (const request of [
      {},
      { instanceName: 'main', digests, acceptableCompressors: [Compressor_Value.IDENTITY, Compressor_Value.ZSTD] },
      { digests: digests.slice(0, 2), acceptableCompressors: [Compressor_Value.ZSTD], digestFunction: 1 },
    ]) {
      const bytes = toBinary(BatchReadBlobsRequestSchema, create(BatchReadBlobsRequestSchema, request));
      expect(batchRead(bytes)).toEqual(fromBinary(BatchReadBlobsRequestSchema, bytes));
    }
    // Unpacked (one key per value), packed and unpacked mixed, and values protobuf-es reads as negative int32s.
    for (const tail of [
      [(3 << 3) | 0, 1, (3 << 3) | 0, 0],
      [(3 << 3) | 2, 2, 1, 2, (3 << 3) | 0, 1],
      [(3 << 3) | 2, 5, 0xff, 0xff, 0xff, 0xff, 0x0f],
      [(3 << 3) | 2, 1, 0x80], // a varint cut short by its field's end
    ]) {
      const bytes = Buffer.concat([
        toBinary(BatchReadBlobsRequestSchema, create(BatchReadBlobsRequestSchema, { digests: digests.slice(0, 1) })),
        Buffer.from(tail),
      ]);
      let expected: unknown;
      try {
        expected = fromBinary(BatchReadBlobsRequestSchema, bytes);
      } catch {
        expect(() => batchRead(bytes)).toThrow();
        continue;
      }
      expect(batchRead(bytes)).toEqual(expected);
    }
  });

  it('is only used for messages of strings, enums and lists of digests', () => {
    expect(digestListDecoder(BatchUpdateBlobsRequestSchema)).toBeNull();
  });

  it('keeps a list as columns only when every digest has 64 lowercase hex characters', () => {
    const good = Array.from({ length: 3 }, (_, i) => ({ hash: hex(i + 1), sizeBytes: BigInt(i * 1000) }));
    const encoded = (blobDigests: Array<{ hash?: string; sizeBytes?: bigint }>) =>
      toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { blobDigests }));
    const columns = digestColumns(decode(encoded(good)) as object);
    expect(columns?.hashes).toEqual(good.map((d) => d.hash));
    expect(Array.from(columns!.sizes)).toEqual([0, 1000, 2000]);
    expect(digestColumns(decode(encoded([])) as object)?.hashes).toEqual([]);
    const hash = good[0]!.hash;
    for (const bad of [
      hash.toUpperCase(),
      hash.slice(1),
      `${hash}0`,
      `${hash.slice(0, 63)}g`,
      `${hash.slice(0, 63)}é`,
      '',
    ]) {
      const bytes = encoded([...good, { hash: bad, sizeBytes: 1n }, ...good]);
      const message = decode(bytes) as object;
      expect(digestColumns(message), JSON.stringify(bad)).toBeUndefined();
      expect(message).toEqual(fromBinary(FindMissingBlobsRequestSchema, bytes));
    }
    expect(digestColumns(decode(encoded([...good, { sizeBytes: 1n }])) as object)).toBeUndefined();
    // A digest with two hash fields has the last (as protobuf-es reads it): a good one then a bad one is bad.
    const twice = Buffer.concat([
      Buffer.from([0x12, 2 + 64 + 3 + 2, 0x0a, 64]),
      Buffer.from(hash, 'latin1'),
      Buffer.from([0x0a, 1, 0x41, 0x10, 1]),
    ]);
    expect((decode(twice) as { blobDigests: Array<{ hash: string }> }).blobDigests[0]!.hash).toBe('A');
    expect(digestColumns(decode(twice) as object)).toBeUndefined();
    // Messages protobuf-es decodes (here, with an unknown field) have none.
    expect(digestColumns(decode(Buffer.concat([encoded(good), Buffer.from([0x78, 1])])) as object)).toBeUndefined();
  });

  it('makes the Digest objects of a list kept as columns when it is first read, and takes a list written to it', () => {
    const blobDigests = Array.from({ length: 4 }, (_, i) => ({ hash: hex(i + 7), sizeBytes: 2n ** BigInt(i * 12) }));
    const bytes = toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { blobDigests }));
    const message = decode(bytes) as { blobDigests: unknown[] };
    expect(message.blobDigests).toBe(message.blobDigests); // made once
    expect(message).toEqual(fromBinary(FindMissingBlobsRequestSchema, bytes));
    message.blobDigests = [];
    expect(message.blobDigests).toEqual([]);
    const frozen = decode(bytes) as { blobDigests: unknown[] };
    deepFreeze(frozen);
    expect(frozen).toEqual(fromBinary(FindMissingBlobsRequestSchema, bytes));
    expect(Object.isFrozen(frozen.blobDigests[0])).toBe(true);
    expect(() => {
      frozen.blobDigests = [];
    }).toThrow(TypeError);
  });
});

describe('digestListEncoder', () => {
  const encode = digestListEncoder(FindMissingBlobsResponseSchema)!;

  it('encodes FindMissingBlobsResponse byte for byte like protobuf-es', () => {
    // ASCII hashes are written as Latin-1 (the same bytes); any other character must still be UTF-8, lone surrogates
    // included (as protobuf-es writes them).
    const unusual = ['ÿ', 'x\u{1F600}', '\ud800', 'a\u0660'].map((hash) => ({ hash, sizeBytes: 1n }));
    for (const missingBlobDigests of [[], digests, digests.slice(0, 1), unusual]) {
      const message = create(FindMissingBlobsResponseSchema, { missingBlobDigests });
      const expected = Buffer.from(toBinary(FindMissingBlobsResponseSchema, message));
      expect(Buffer.compare(encode(message), expected)).toBe(0);
    }
  });

  it('encodes a reply of digests chosen from a request by copying their bytes, which decode to those digests', () => {
    const blobDigests = Array.from({ length: 5 }, (_, i) => ({ hash: hex(i + 20), sizeBytes: BigInt(i * 300) }));
    const bytes = toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { blobDigests }));
    const columns = digestColumns(digestListDecoder(FindMissingBlobsRequestSchema)!(bytes) as object)!;
    for (const chosen of [[], [0], [4, 1, 3], [0, 1, 2, 3, 4]]) {
      const reply = chosenDigests<{ missingBlobDigests: unknown[] }>('missingBlobDigests', columns, chosen);
      const wire = encode(reply);
      const expected = { missingBlobDigests: chosen.map((i) => blobDigests[i]!) };
      expect(wire).toEqual(
        Buffer.from(toBinary(FindMissingBlobsResponseSchema, create(FindMissingBlobsResponseSchema, expected))),
      );
      expect(frameInPlace(wire)?.subarray(5).equals(wire)).toBe(true); // room for the gRPC prefix left in front
      expect(reply.missingBlobDigests).toEqual(expected.missingBlobDigests.map((d) => expect.objectContaining(d)));
    }
  });

  it('encodes a reply whose chosen list was replaced from the list it now holds', () => {
    const blobDigests = Array.from({ length: 3 }, (_, i) => ({ hash: hex(i + 40), sizeBytes: BigInt(i + 1) }));
    const bytes = toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { blobDigests }));
    const request = digestListDecoder(FindMissingBlobsRequestSchema)!(bytes) as { blobDigests: unknown[] };
    const reply = chosenDigests<{ missingBlobDigests: unknown[] }>(
      'missingBlobDigests',
      digestColumns(request)!,
      [0, 1],
    );
    const replacement = [create(DigestSchema, blobDigests[2]!)];
    reply.missingBlobDigests = replacement;
    const expected = create(FindMissingBlobsResponseSchema, { missingBlobDigests: replacement });
    expect(encode(reply)).toEqual(Buffer.from(toBinary(FindMissingBlobsResponseSchema, expected)));
    // A request whose list was replaced no longer has columns that stand for it.
    request.blobDigests = [];
    expect(digestColumns(request)).toBeUndefined();
  });

  it('is only used for messages of lists of digests', () => {
    expect(digestListEncoder(FindMissingBlobsRequestSchema)).toBeNull();
  });
});
