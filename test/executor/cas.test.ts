// ContentAddressableStorage over a real gRPC channel: FindMissingBlobs, the batch calls, GetTree, and
// what each does with malformed digests, lying sizes, over-limit batches and foreign digest functions.
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadZstd } from '../../executor/reapi/zstd.ts';
import { EMPTY_SHA256 } from '../../shared/digest.ts';
import {
  Compressor_Value,
  DigestFunction_Value,
  type Directory,
  DirectorySchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { codeOf, digestOf, drain, randomBytes, startTestServer, type TestServer } from './helpers.ts';
import { bytesOf } from '../helpers/bytes.ts';

const MiB = 1024 * 1024;

describe('ContentAddressableStorage', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ args: ['--max-batch-size', '1MiB'] });
  });
  afterAll(() => server.stop());
  const cas = () => server.clients.cas;

  it('BatchUpdateBlobs stores blobs that FindMissingBlobs then knows and BatchReadBlobs returns', async () => {
    const blobs = ['alpha', 'beta', 'gamma'].map((s) => Buffer.from(s));
    const update = await cas().batchUpdateBlobs({ requests: blobs.map((data) => ({ digest: digestOf(data), data })) });
    expect(update.responses.map((r) => r.status?.code)).toEqual([0, 0, 0]);

    const unknown = digestOf('never stored');
    const missing = await cas().findMissingBlobs({ blobDigests: [...blobs.map(digestOf), unknown] });
    expect(missing.missingBlobDigests.map((d) => d.hash)).toEqual([unknown.hash]);

    const read = await cas().batchReadBlobs({ digests: [...blobs.map(digestOf), unknown] });
    expect(read.responses.map((r) => Buffer.from(r.data).toString())).toEqual(['alpha', 'beta', 'gamma', '']);
    expect(read.responses.map((r) => r.status?.code)).toEqual([0, 0, 0, grpc.status.NOT_FOUND]);
  });

  it('keeps instances apart', async () => {
    const data = Buffer.from('only in team-a');
    await cas().batchUpdateBlobs({ instanceName: 'team-a', requests: [{ digest: digestOf(data), data }] });
    expect(
      (await cas().findMissingBlobs({ instanceName: 'team-a', blobDigests: [digestOf(data)] })).missingBlobDigests,
    ).toHaveLength(0);
    expect((await cas().findMissingBlobs({ blobDigests: [digestOf(data)] })).missingBlobDigests).toHaveLength(1);
    expect(
      (await cas().findMissingBlobs({ instanceName: 'team-b/sub', blobDigests: [digestOf(data)] })).missingBlobDigests,
    ).toHaveLength(1);
  });

  it('always has the empty blob', async () => {
    const empty = { hash: EMPTY_SHA256, sizeBytes: 0n };
    expect((await cas().findMissingBlobs({ blobDigests: [empty] })).missingBlobDigests).toHaveLength(0);
    const read = await cas().batchReadBlobs({ digests: [empty] });
    expect(read.responses[0]!.status?.code).toBe(0);
    expect(read.responses[0]!.data.byteLength).toBe(0);
  });

  it('treats a digest whose size lies about a stored blob as missing', async () => {
    const data = Buffer.from('sized right');
    await cas().batchUpdateBlobs({ requests: [{ digest: digestOf(data), data }] });
    const lying = { ...digestOf(data), sizeBytes: 999n };
    expect((await cas().findMissingBlobs({ blobDigests: [lying] })).missingBlobDigests).toHaveLength(1);
    expect((await cas().batchReadBlobs({ digests: [lying] })).responses[0]!.status?.code).toBe(grpc.status.NOT_FOUND);
  });

  it('fails each bad blob of a batch alone, with a message', async () => {
    const good = Buffer.from('good blob');
    const reply = await cas().batchUpdateBlobs({
      requests: [
        { digest: digestOf(good), data: good },
        { digest: digestOf('something else'), data: Buffer.from('something elsf') }, // wrong bytes
        { digest: { ...digestOf(good), sizeBytes: 3n }, data: good }, // lying size
        { digest: { hash: 'NOT-HEX', sizeBytes: 1n }, data: Buffer.from('x') },
        { digest: { hash: digestOf(good).hash, sizeBytes: -1n }, data: good },
        { data: good }, // no digest at all
        { digest: digestOf(good), data: good, compressor: Compressor_Value.BROTLI },
      ],
    });
    const codes = reply.responses.map((r) => r.status?.code);
    expect(codes).toEqual([0, 3, 3, 3, 3, 3, 3]);
    expect(reply.responses[1]!.status?.message).toMatch(/sha256 mismatch/);
    expect(reply.responses[2]!.status?.message).toMatch(/size mismatch/);
    expect(reply.responses[6]!.status?.message).toMatch(/BROTLI/);
    const stillMissing = await cas().findMissingBlobs({ blobDigests: [digestOf('something else')] });
    expect(stillMissing.missingBlobDigests).toHaveLength(1);
  });

  it('accepts zstd-compressed entries in BatchUpdateBlobs and rejects ones that expand past their size', async () => {
    const zstd = loadZstd()!;
    const data = Buffer.from('compress me '.repeat(1000));
    const compressed = await collectStream(new Blob([data]).stream().pipeThrough(zstd.compressor()));
    expect(compressed.byteLength).toBeLessThan(data.byteLength);
    const ok = await cas().batchUpdateBlobs({
      requests: [{ digest: digestOf(data), data: compressed, compressor: Compressor_Value.ZSTD }],
    });
    expect(ok.responses[0]!.status?.code).toBe(0);
    const read = await cas().batchReadBlobs({ digests: [digestOf(data)] });
    expect(bytesOf(read.responses[0]!.data)).toEqual(bytesOf(data));

    const bomb = { ...digestOf(data.subarray(0, 100)) };
    const bad = await cas().batchUpdateBlobs({
      requests: [{ digest: bomb, data: compressed, compressor: Compressor_Value.ZSTD }],
    });
    expect(bad.responses[0]!.status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const garbage = await cas().batchUpdateBlobs({
      requests: [{ digest: digestOf(data), data: Buffer.from('not zstd'), compressor: Compressor_Value.ZSTD }],
    });
    expect(garbage.responses[0]!.status?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('refuses whole requests that are malformed, over the batch limit or for another digest function', async () => {
    const bad = await codeOf(cas().findMissingBlobs({ blobDigests: [{ hash: 'abc', sizeBytes: 1n }] }));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/blob_digests\[0\]/);

    const big = randomBytes(600 * 1024);
    const over = await codeOf(
      cas().batchUpdateBlobs({
        requests: [
          { digest: digestOf(big), data: big },
          { digest: digestOf(big), data: big },
        ],
      }),
    );
    expect(over.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(over.details).toMatch(/batch limit/);

    const overRead = await codeOf(
      cas().batchReadBlobs({ digests: [{ hash: EMPTY_SHA256.replace('e', 'f'), sizeBytes: BigInt(2 * MiB) }] }),
    );
    expect(overRead.code).toBe(grpc.status.INVALID_ARGUMENT);
    // One malformed digest among well-formed ones refuses the whole BatchReadBlobs, naming it.
    const good = digestOf(Buffer.from('good'));
    for (const hash of [good.hash.toUpperCase(), good.hash.slice(1), `${good.hash.slice(0, 63)}g`]) {
      const malformed = await codeOf(cas().batchReadBlobs({ digests: [good, { hash, sizeBytes: 4n }, good] }));
      expect(malformed.code, hash).toBe(grpc.status.INVALID_ARGUMENT);
      expect(malformed.details).toMatch(/digests\[1\]/);
    }

    for (const fn of [DigestFunction_Value.SHA1, DigestFunction_Value.BLAKE3, DigestFunction_Value.MD5]) {
      const refused = await codeOf(cas().findMissingBlobs({ digestFunction: fn, blobDigests: [] }));
      expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(refused.details).toMatch(/digest function/);
    }
    expect(
      (await cas().findMissingBlobs({ digestFunction: DigestFunction_Value.SHA256, blobDigests: [] }))
        .missingBlobDigests,
    ).toEqual([]);
  });

  it('refuses a FindMissingBlobs whose every digest but one is well formed, naming that one', async () => {
    const good = Array.from({ length: 5 }, (_, i) => digestOf(`good ${i}`));
    const hash = good[0]!.hash;
    const malformed = [
      { hash: hash.slice(1), sizeBytes: 1n }, // 63 characters
      { hash: `${hash}0`, sizeBytes: 1n }, // 65
      { hash: hash.toUpperCase(), sizeBytes: 1n },
      ...['g', '/', ':', '`', ' ', 'é', '\u0660'].map((c) => ({ hash: `${hash.slice(0, 63)}${c}`, sizeBytes: 1n })),
      { hash, sizeBytes: -1n },
      { hash, sizeBytes: 2n ** 53n }, // not exact as a number
    ];
    for (const digest of malformed) {
      const refused = await codeOf(cas().findMissingBlobs({ blobDigests: [...good, digest, ...good] }));
      expect(refused.code, `${JSON.stringify(digest.hash)}/${digest.sizeBytes}`).toBe(grpc.status.INVALID_ARGUMENT);
      expect(refused.details).toMatch(/blob_digests\[5\]/);
    }
    // The empty blob is always there, and never reported missing; the others are.
    const reply = await cas().findMissingBlobs({ blobDigests: [...good, { hash: EMPTY_SHA256, sizeBytes: 0n }] });
    expect(reply.missingBlobDigests).toEqual(good.map((d) => expect.objectContaining(d)));
  });

  it('answers FindMissingBlobs for 10,000 digests', async () => {
    const digests = Array.from({ length: 10_000 }, (_, i) => digestOf(`blob ${i}`));
    const reply = await cas().findMissingBlobs({ blobDigests: digests });
    expect(reply.missingBlobDigests).toHaveLength(10_000);
  });

  describe('GetTree', () => {
    // root -> a, b;  a -> c;  b -> c (shared);  c -> (missing d)
    const put = async (dir: Directory) => {
      const bytes = toBinary(DirectorySchema, dir);
      await cas().batchUpdateBlobs({ requests: [{ digest: digestOf(bytes), data: bytes }] });
      return digestOf(bytes);
    };
    const node = (name: string, digest: { hash: string; sizeBytes: bigint }) => ({ name, digest });
    let root: { hash: string; sizeBytes: bigint };
    let all: string[];

    beforeAll(async () => {
      const missing = digestOf(toBinary(DirectorySchema, create(DirectorySchema, { files: [{ name: 'gone' }] })));
      const c = await put(
        create(DirectorySchema, {
          files: [{ name: 'c.txt', digest: digestOf('c') }],
          directories: [node('d', missing)],
        }),
      );
      const a = await put(create(DirectorySchema, { files: [{ name: 'a.txt' }], directories: [node('c', c)] }));
      const b = await put(create(DirectorySchema, { files: [{ name: 'b.txt' }], directories: [node('c', c)] }));
      root = await put(create(DirectorySchema, { directories: [node('a', a), node('b', b)] }));
      all = [root.hash, a.hash, b.hash, c.hash];
    });

    const hashes = (pages: Array<{ directories: Directory[] }>) =>
      pages.flatMap((p) => p.directories.map((d) => digestOf(toBinary(DirectorySchema, d)).hash));

    it('returns each present directory once, breadth first, leaving out missing ones', async () => {
      const pages = await drain(cas().getTree({ rootDigest: root }));
      expect(hashes(pages)).toEqual(all);
      expect(pages.at(-1)!.nextPageToken).toBe('');
    });

    it('pages by page_size and resumes from a page token', async () => {
      const pages = await drain(cas().getTree({ rootDigest: root, pageSize: 3 }));
      expect(pages.map((p) => p.directories.length)).toEqual([3, 1]);
      const token = pages[0]!.nextPageToken;
      expect(token).not.toBe('');
      const rest = await drain(cas().getTree({ rootDigest: root, pageSize: 3, pageToken: token }));
      expect(hashes(rest)).toEqual(all.slice(3));
    });

    it('is NOT_FOUND for a missing root and INVALID_ARGUMENT for bad tokens and sizes', async () => {
      expect((await codeOf(drain(cas().getTree({ rootDigest: digestOf('no such dir') })))).code).toBe(
        grpc.status.NOT_FOUND,
      );
      expect((await codeOf(drain(cas().getTree({ rootDigest: root, pageToken: 'zzz' })))).code).toBe(
        grpc.status.INVALID_ARGUMENT,
      );
      expect((await codeOf(drain(cas().getTree({ rootDigest: root, pageSize: -1 })))).code).toBe(
        grpc.status.INVALID_ARGUMENT,
      );
      expect((await codeOf(drain(cas().getTree({})))).code).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });
});

async function collectStream(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}
