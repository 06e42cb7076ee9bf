// ByteStream resource names: instances of any depth, upload ids, compressors, metadata, and refusals.
import { describe, expect, it } from 'vitest';
import { parseReadName, parseWriteName } from '../../../executor/bytestream/resource-name.ts';

const H = 'a'.repeat(64);

describe('parseReadName', () => {
  it.each([
    [`blobs/${H}/12`, '', 'identity'],
    [`team-a/blobs/${H}/12`, 'team-a', 'identity'],
    [`a/b.c/d_e/blobs/${H}/12`, 'a/b.c/d_e', 'identity'],
    [`compressed-blobs/zstd/${H}/12`, '', 'zstd'],
    [`x/compressed-blobs/zstd/${H}/12`, 'x', 'zstd'],
  ])('%s', (name, instance, encoding) => {
    expect(parseReadName(name)).toEqual({ instance, digest: { hash: H, sizeBytes: 12 }, encoding });
  });

  it.each([
    ['', /invalid resource name/],
    [`blobs/${H}`, /invalid resource name/],
    [`blobs/${H}/12/extra`, /nothing after/],
    [`blobs/${H}/-1`, /invalid resource name/],
    [`blobs/${H.toUpperCase()}/12`, /SHA-256/],
    [`blobs/blake3/${H}/12`, /digest function "blake3"/],
    [`compressed-blobs/deflate/${H}/12`, /deflate is not supported/],
    [`compressed-blobs/${H}/12`, /compressed-blobs\/zstd/],
    [`../x/blobs/${H}/12`, /instance/],
    [`uploads/u/blobs/${H}/12`, /invalid resource name/],
  ])('refuses %s', (name, message) => {
    expect(() => parseReadName(name)).toThrow(message);
  });
});

describe('parseWriteName', () => {
  it('takes the upload id, the digest and ignores metadata after the size', () => {
    expect(parseWriteName(`i/j/uploads/1234-uuid/blobs/${H}/7/meta/data`)).toEqual({
      instance: 'i/j',
      uuid: '1234-uuid',
      digest: { hash: H, sizeBytes: 7 },
      encoding: 'identity',
    });
    expect(parseWriteName(`uploads/u/compressed-blobs/zstd/${H}/7`).encoding).toBe('zstd');
  });

  it.each([
    `blobs/${H}/7`,
    `uploads/blobs/${H}/7`,
    `uploads//blobs/${H}/7`,
    `uploads/u/${H}/7`,
    `uploads/u/blobs/${H}`,
  ])('refuses %s', (name) => {
    expect(() => parseWriteName(name)).toThrow(/invalid resource name/);
  });
});
