// A request sent again byte for byte is decoded once, to what protobuf-es decodes, and cannot be changed by a handler.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { repeatedRequestDecoder } from '../../../executor/grpc/repeated-requests.ts';
import { FetchBlobRequestSchema } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import { FindMissingBlobsRequestSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

const bytesOf = (uri: string, sri = 'sha256-AAAA') =>
  toBinary(
    FetchBlobRequestSchema,
    create(FetchBlobRequestSchema, { uris: [uri], qualifiers: [{ name: 'checksum.sri', value: sri }] }),
  );

/** The FetchBlob decoder over protobuf-es, counting how often protobuf-es is asked. */
function counting() {
  let calls = 0;
  const decode = repeatedRequestDecoder(FetchBlobRequestSchema, (bytes) => {
    calls++;
    return fromBinary(FetchBlobRequestSchema, bytes);
  });
  if (decode === null) throw new Error('FetchBlobRequest has no repeated-request decoder');
  return { decode, calls: () => calls };
}

describe('repeatedRequestDecoder', () => {
  it('decodes the same bytes once, to what protobuf-es decodes, and hands out that one object', () => {
    const { decode, calls } = counting();
    const bytes = bytesOf('https://example.com/a.tar.gz');
    const first = decode(bytes);
    expect(first).toEqual(fromBinary(FetchBlobRequestSchema, bytes));
    expect(decode(Uint8Array.from(bytes))).toBe(first);
    expect(calls()).toBe(1);
  });

  it('tells apart requests that differ in one byte', () => {
    const { decode, calls } = counting();
    const a = decode(bytesOf('https://example.com/a.tar.gz', 'sha256-AAAA'));
    const b = decode(bytesOf('https://example.com/a.tar.gz', 'sha256-AAAB'));
    expect(b).not.toBe(a);
    expect(calls()).toBe(2);
  });

  it('hands out a request no handler can change, nested messages included', () => {
    const { decode } = counting();
    const request = decode(bytesOf('https://example.com/a.tar.gz')) as {
      uris: string[];
      qualifiers: Array<{ value: string }>;
    };
    expect(() => request.uris.push('https://elsewhere/')).toThrow(TypeError);
    expect(() => {
      request.qualifiers[0]!.value = 'sha256-BBBB';
    }).toThrow(TypeError);
  });

  it('keeps nothing that failed to decode: malformed bytes fail every time', () => {
    const { decode, calls } = counting();
    const malformed = Uint8Array.of(0x22, 0x05, 0x61); // field 4, 5 bytes long, 1 byte given
    expect(() => decode(malformed)).toThrow();
    expect(() => decode(malformed)).toThrow();
    expect(calls()).toBe(2);
  });

  it('decodes a request too big to keep every time', () => {
    const { decode, calls } = counting();
    const big = bytesOf(`https://example.com/${'x'.repeat(4096)}`);
    expect(decode(big)).not.toBe(decode(big));
    expect(calls()).toBe(2);
  });

  it('keeps at most 4096 requests, letting go of the one kept first', () => {
    const { decode, calls } = counting();
    for (let i = 0; i <= 4096; i++) decode(bytesOf(`https://example.com/${i}`));
    decode(bytesOf('https://example.com/4096'));
    expect(calls()).toBe(4097);
    decode(bytesOf('https://example.com/0'));
    expect(calls()).toBe(4098);
  });

  it('leaves every other method alone', () => {
    expect(repeatedRequestDecoder(FindMissingBlobsRequestSchema, (b) => b)).toBeNull();
  });
});
