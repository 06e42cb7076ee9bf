import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { EMPTY_SHA256, formatDigest, isEmptyDigest, parseDigest, parseHash } from '../../shared/digest.ts';
import { DigestSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

const HASH = 'a'.repeat(64);

describe('formatDigest', () => {
  it('writes hash/size, the same for a parsed digest and a protobuf Digest message', () => {
    expect(formatDigest(parseDigest(HASH, 42))).toBe(`${HASH}/42`);
    expect(formatDigest(create(DigestSchema, { hash: HASH, sizeBytes: 42n }))).toBe(`${HASH}/42`);
  });
});

describe('isEmptyDigest', () => {
  it("is the empty blob's hash with size 0, and nothing else", () => {
    expect(isEmptyDigest({ hash: EMPTY_SHA256, sizeBytes: 0 })).toBe(true);
    expect(isEmptyDigest({ hash: EMPTY_SHA256, sizeBytes: 1 })).toBe(false);
    expect(isEmptyDigest({ hash: HASH, sizeBytes: 0 })).toBe(false);
  });
});

describe('parseHash', () => {
  it('takes 64 lowercase hex characters and nothing else', () => {
    expect(parseHash(EMPTY_SHA256)).toBe(EMPTY_SHA256);
    expect(parseHash('0123456789abcdef'.repeat(4))).toBe('0123456789abcdef'.repeat(4));
    for (const bad of [
      '',
      'a'.repeat(63),
      'a'.repeat(65),
      'A'.repeat(64),
      `${'a'.repeat(63)}g`,
      `${'a'.repeat(64)}\n`,
      `\n${'a'.repeat(63)}`,
      `${'a'.repeat(62)}é1`,
    ]) {
      expect(() => parseHash(bad), JSON.stringify(bad)).toThrow(/not a SHA-256 hash/);
    }
  });
});
