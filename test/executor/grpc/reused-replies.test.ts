// A reply marked as reused is encoded once, byte for byte as protobuf-es encodes it, and cannot change afterwards.
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { encodedOnce, reusedReply } from '../../../executor/grpc/reused-replies.ts';
import { FetchBlobResponseSchema } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';

const reply = () => ({
  status: { code: 0, message: '' },
  uri: 'https://example.com/file.tar.gz',
  blobDigest: { hash: 'a'.repeat(64), sizeBytes: 1234n },
  digestFunction: 1,
});

/** protobuf-es's encoding, counting how often it is asked. */
function counting() {
  let calls = 0;
  const encode = (message: unknown) => {
    calls++;
    return Buffer.from(toBinary(FetchBlobResponseSchema, create(FetchBlobResponseSchema, message as never)));
  };
  return { encode, calls: () => calls };
}

describe('reusedReply', () => {
  it('is encoded once, to the bytes protobuf-es writes for it', () => {
    const { encode, calls } = counting();
    const reused = reusedReply(reply());
    const expected = Buffer.from(toBinary(FetchBlobResponseSchema, create(FetchBlobResponseSchema, reply())));
    for (let i = 0; i < 3; i++) expect(Buffer.compare(encodedOnce(reused, encode), expected)).toBe(0);
    expect(calls()).toBe(1);
  });

  it('leaves every other message to be encoded each time', () => {
    const { encode, calls } = counting();
    const plain = reply();
    encodedOnce(plain, encode);
    encodedOnce(plain, encode);
    expect(calls()).toBe(2);
  });

  it('cannot be changed once marked, nested messages included', () => {
    const reused = reusedReply(reply());
    expect(() => {
      (reused as { uri: string }).uri = 'https://elsewhere/';
    }).toThrow(TypeError);
    expect(() => {
      (reused.blobDigest as { hash: string }).hash = 'b'.repeat(64);
    }).toThrow(TypeError);
  });
});
