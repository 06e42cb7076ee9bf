// The hand-written encoder for BatchReadBlobsResponse writes exactly what protobuf-es writes, and leaves the
// replies it does not take to protobuf-es.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { batchReadResponseEncoder } from '../../../executor/grpc/batch-read-message.ts';
import { frameInPlace } from '../../../executor/grpc/bytes-message.ts';
import { digestColumns } from '../../../executor/grpc/digest-columns.ts';
import { digestListDecoder } from '../../../executor/grpc/digest-lists.ts';
import { foundBlobCount, foundReply, layOutFound } from '../../../executor/grpc/found-blobs-reply.ts';
import {
  BatchReadBlobsRequestSchema,
  BatchReadBlobsResponseSchema,
  BatchUpdateBlobsResponseSchema,
  Compressor_Value,
  DigestSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { StatusSchema } from '../../../shared/proto/gen/google/rpc/status_pb.ts';
import { randomBytes } from '../helpers.ts';

const hex = (seed: number) => Buffer.from(randomBytes(32, seed)).toString('hex');

describe('batchReadResponseEncoder', () => {
  const encode = batchReadResponseEncoder(BatchReadBlobsResponseSchema)!;
  const same = (responses: unknown[]) => {
    const init = { responses } as Parameters<typeof create<typeof BatchReadBlobsResponseSchema>>[1];
    const expected = Buffer.from(toBinary(BatchReadBlobsResponseSchema, create(BatchReadBlobsResponseSchema, init)));
    expect(Buffer.compare(encode(init), expected)).toBe(0);
  };

  it('leaves room in front of the reply for the gRPC prefix, so it is framed where it was written', () => {
    const message = encode({
      responses: [{ digest: { hash: hex(3), sizeBytes: 1024n }, data: randomBytes(1024, 3), status: {} }],
    });
    const frame = frameInPlace(message)!;
    expect(frame.buffer).toBe(message.buffer);
    expect(frame.byteOffset + 5).toBe(message.byteOffset);
    expect(frame.subarray(5).equals(message)).toBe(true);
    expect(frame.readUInt32BE(1)).toBe(message.byteLength);
  });

  it('encodes found and missing blobs byte for byte like protobuf-es, from empty to 2 MiB', () => {
    same([]);
    same(
      [0, 1, 127, 128, 1024, 16_384, 2 * 1024 * 1024].map((size, i) => ({
        digest: create(DigestSchema, { hash: hex(i + 1), sizeBytes: BigInt(size) }),
        data: randomBytes(size, i + 1),
        status: create(StatusSchema, { code: 0 }),
        compressor: Compressor_Value.IDENTITY,
      })),
    );
    same([
      { digest: { hash: hex(9), sizeBytes: 5n }, status: create(StatusSchema, { code: 5, message: 'blob ünknown' }) },
      { digest: {}, data: randomBytes(3, 4), compressor: Compressor_Value.ZSTD },
      {},
    ]);
  });

  it('gives protobuf-es what it does not take: status details, negative codes, huge sizes, unknown fields', () => {
    const detail = { typeUrl: 'type.googleapis.com/x', value: new Uint8Array([1, 2]) };
    same([{ status: { code: 3, details: [detail] } }]);
    same([{ status: { code: -1 } }]);
    same([{ digest: { hash: hex(1), sizeBytes: 2n ** 60n } }]);
    const withUnknown = fromBinary(DigestSchema, Buffer.from([(7 << 3) | 0, 1]));
    same([{ digest: withUnknown }]);
  });

  it('is only used for BatchReadBlobsResponse', () => {
    expect(batchReadResponseEncoder(BatchUpdateBlobsResponseSchema)).toBeNull();
  });
});

describe('a reply laid out as found (found-blobs-reply.ts)', () => {
  const decodeRequest = digestListDecoder(BatchReadBlobsRequestSchema)!;
  const encode = batchReadResponseEncoder(BatchReadBlobsResponseSchema)!;
  const sizes = [1, 0, 127, 128, 16_384, 70_000];
  const blobs = sizes.map((size, i) => randomBytes(size, i + 1));
  const request = toBinary(
    BatchReadBlobsRequestSchema,
    create(BatchReadBlobsRequestSchema, {
      digests: blobs.map((b, i) => ({ hash: hex(i + 1), sizeBytes: BigInt(b.byteLength) })),
    }),
  );
  const filled = () => {
    const columns = digestColumns(decodeRequest(request) as object)!;
    const layout = layOutFound(columns);
    for (const [i, b] of blobs.entries()) layout.message.set(b, layout.dataAt[i]!);
    return foundReply(columns, layout);
  };
  const expected = blobs.map((data, i) => ({
    digest: create(DigestSchema, { hash: hex(i + 1), sizeBytes: BigInt(data.byteLength) }),
    data,
    status: create(StatusSchema, { code: 0 }),
    compressor: Compressor_Value.IDENTITY,
  }));
  const protobufEs = (responses: unknown[]) =>
    Buffer.from(
      toBinary(
        BatchReadBlobsResponseSchema,
        create(BatchReadBlobsResponseSchema, { responses } as Parameters<typeof create>[1]),
      ),
    );

  it('is, once filled, byte for byte what protobuf-es writes, framed in place, counted as all found', () => {
    const reply = filled();
    expect(foundBlobCount(reply)).toBe(blobs.length);
    const message = encode(reply);
    expect(message.equals(protobufEs(expected))).toBe(true);
    expect(frameInPlace(message)?.buffer).toBe(message.buffer);
  });

  it('makes its list of responses when read, and is encoded from a list written in its place', () => {
    const reply = filled();
    const read = reply.responses.map((r) => ({ ...r, data: Buffer.from(r.data) }));
    expect(protobufEs(read).equals(protobufEs(expected))).toBe(true);
    reply.responses = reply.responses.slice(0, 2);
    expect(foundBlobCount(reply)).toBeUndefined();
    expect(encode(reply).equals(protobufEs(expected.slice(0, 2)))).toBe(true);
  });
});
