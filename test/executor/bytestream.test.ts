// ByteStream over a real gRPC channel: streamed writes verified on the way in, reads with offsets and
// limits, resumable uploads through QueryWriteStatus, zstd compressed-blobs, and bad resource names.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadZstd } from '../../executor/reapi/zstd.ts';
import type { WriteRequestSchema } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { codeOf, digestOf, drain, randomBytes, readAll, sha256, startTestServer, type TestServer } from './helpers.ts';
import { bytesOf } from '../helpers/bytes.ts';

type WriteInit = MessageInitShape<typeof WriteRequestSchema>;
const MiB = 1024 * 1024;

/** Write requests for `data` in `chunk`-sized pieces, starting at `from`. */
function* chunks(resourceName: string, data: Uint8Array, chunk = 256 * 1024, from = 0): Generator<WriteInit> {
  let offset = from;
  do {
    const end = Math.min(offset + chunk, data.byteLength);
    yield {
      resourceName,
      writeOffset: BigInt(offset),
      data: data.subarray(offset, end),
      finishWrite: end === data.byteLength,
    };
    offset = end;
  } while (offset < data.byteLength);
}

describe('ByteStream', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ args: ['--max-blob-size', '64MiB'] });
  });
  afterAll(() => server.stop());
  const bs = () => server.clients.bytestream;

  it('reads a large blob intact to a client that takes each message late (messages queue while buffers are reused)', async () => {
    const data = randomBytes(12 * MiB + 5, 8);
    const { hash } = digestOf(data);
    await bs().write(chunks(`uploads/3f1c2a4e-0000-4000-8000-000000000002/blobs/${hash}/${data.byteLength}`, data));
    const parts: Buffer[] = [];
    for await (const part of bs().read({ resourceName: `blobs/${hash}/${data.byteLength}` })) {
      parts.push(Buffer.from(part.data));
      // A slow client (not synchronisation): the server's messages wait in grpc-js's queue meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(sha256(Buffer.concat(parts))).toBe(hash);
  });

  it('writes a large blob in chunks and reads it back, whole and by offset and limit', async () => {
    const data = randomBytes(9 * MiB + 123, 7);
    const { hash } = digestOf(data);
    const name = `team-a/uploads/3f1c2a4e-0000-4000-8000-000000000001/blobs/${hash}/${data.byteLength}`;
    const reply = await bs().write(chunks(name, data));
    expect(reply.committedSize).toBe(BigInt(data.byteLength));

    const read = `team-a/blobs/${hash}/${data.byteLength}`;
    const parts = await drain(bs().read({ resourceName: read }));
    expect(Math.max(...parts.map((p) => p.data.byteLength))).toBeLessThanOrEqual(MiB);
    expect(sha256(Buffer.concat(parts.map((p) => p.data)))).toBe(hash);

    const slice = await readAll(server.clients, read, { readOffset: 5_000_000n, readLimit: 1_000_000n });
    expect(bytesOf(slice)).toEqual(bytesOf(data.subarray(5_000_000, 6_000_000)));
    const tail = await readAll(server.clients, read, { readOffset: BigInt(data.byteLength - 10) });
    expect(bytesOf(tail)).toEqual(bytesOf(data.subarray(data.byteLength - 10)));
    expect((await readAll(server.clients, read, { readOffset: BigInt(data.byteLength) })).byteLength).toBe(0);

    const missing = await server.clients.cas.findMissingBlobs({
      instanceName: 'team-a',
      blobDigests: [digestOf(data)],
    });
    expect(missing.missingBlobDigests).toHaveLength(0);
  });

  it('accepts resource names with and without instance, and optional metadata after the size', async () => {
    const data = Buffer.from('named in many ways');
    const { hash } = digestOf(data);
    for (const [instance, prefix] of [
      ['', ''],
      ['a/b/c', 'a/b/c/'],
    ] as const) {
      await bs().write([
        {
          resourceName: `${prefix}uploads/u-${instance.length}/blobs/${hash}/${data.byteLength}/some/metadata`,
          data,
          finishWrite: true,
        },
      ]);
      expect(bytesOf(await readAll(server.clients, `${prefix}blobs/${hash}/${data.byteLength}`))).toEqual(
        bytesOf(data),
      );
    }
  });

  it('rejects bytes that do not match the digest, and stores nothing', async () => {
    const data = Buffer.from('the real bytes');
    const { hash } = digestOf('other bytes, same length?');
    const wrongHash = await codeOf(
      bs().write([{ resourceName: `uploads/u/blobs/${hash}/${data.byteLength}`, data, finishWrite: true }]),
    );
    expect(wrongHash.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(wrongHash.details).toMatch(/size mismatch|sha256 mismatch/);

    const real = digestOf(data).hash;
    const tooLong = await codeOf(bs().write([{ resourceName: `uploads/u/blobs/${real}/5`, data, finishWrite: true }]));
    expect(tooLong.code).toBe(grpc.status.INVALID_ARGUMENT);
    const tooShort = await codeOf(
      bs().write([{ resourceName: `uploads/u/blobs/${real}/100`, data, finishWrite: true }]),
    );
    expect(tooShort.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await codeOf(readAll(server.clients, `blobs/${real}/${data.byteLength}`))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('rejects a large upload (recorded for resuming, adopted by the disk store) whose bytes do not match, and keeps nothing', async () => {
    const data = randomBytes(3 * MiB, 21);
    const wrong = digestOf(randomBytes(3 * MiB, 22)).hash;
    const name = `uploads/wrong-large/blobs/${wrong}/${data.byteLength}`;
    const { code, details } = await codeOf(bs().write(chunks(name, data)));
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(details).toMatch(/sha256 mismatch/);
    expect((await codeOf(readAll(server.clients, `blobs/${wrong}/${data.byteLength}`))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect(await bs().queryWriteStatus({ resourceName: name })).toMatchObject({ committedSize: 0n, complete: false });
    const tooLong = await codeOf(bs().write(chunks(`uploads/long/blobs/${digestOf(data).hash}/${2 * MiB}`, data)));
    expect(tooLong.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('refuses bad offsets, limits, names and sizes with the REAPI status codes', async () => {
    const data = Buffer.from('offsets');
    const { hash } = digestOf(data);
    await bs().write([{ resourceName: `uploads/u/blobs/${hash}/7`, data, finishWrite: true }]);
    const read = (resourceName: string, extra = {}) => codeOf(readAll(server.clients, resourceName, extra));
    expect((await read(`blobs/${hash}/7`, { readOffset: 8n })).code).toBe(grpc.status.OUT_OF_RANGE);
    expect((await read(`blobs/${hash}/7`, { readOffset: -1n })).code).toBe(grpc.status.OUT_OF_RANGE);
    expect((await read(`blobs/${hash}/7`, { readLimit: -1n })).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await read(`blobs/${digestOf('absent').hash}/6`)).code).toBe(grpc.status.NOT_FOUND);
    for (const bad of [
      '',
      'blobs',
      `blobs/${hash}`,
      `blobs/${hash}/x`,
      `blobs/${hash.toUpperCase()}/7`,
      `../blobs/${hash}/7`,
      `blobs/blake3/${hash}/7`,
      `uploads/u/blobs/${hash}/7`,
      `compressed-blobs/brotli/${hash}/7`,
    ]) {
      expect((await read(bad)).code, bad).toBe(grpc.status.INVALID_ARGUMENT);
    }
    const write = (requests: WriteInit[]) => codeOf(bs().write(requests));
    expect((await write([{ resourceName: `blobs/${hash}/7`, data, finishWrite: true }])).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    expect((await write([{ resourceName: `uploads/u/blobs/${hash}/${65 * MiB}`, finishWrite: true }])).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    expect(
      (await write([{ resourceName: `uploads/u2/blobs/${hash}/7`, writeOffset: 3n, data, finishWrite: true }])).code,
    ).toBe(grpc.status.INVALID_ARGUMENT);
    // (Of a blob not stored yet: one already stored is answered before any data is looked at.)
    const fresh = digestOf('offsetz').hash;
    const skipped = await write([
      { resourceName: `uploads/u3/blobs/${fresh}/7`, data: data.subarray(0, 3) },
      { writeOffset: 5n, data: data.subarray(3), finishWrite: true },
    ]);
    expect(skipped.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(skipped.details).toMatch(/write_offset/);
  });

  it('resumes an interrupted upload from QueryWriteStatus', async () => {
    const data = randomBytes(6 * MiB, 42);
    const { hash } = digestOf(data);
    const name = `uploads/5d1f0000-0000-4000-8000-00000000beef/blobs/${hash}/${data.byteLength}`;
    async function* interrupted(): AsyncGenerator<WriteInit> {
      let sent = 0;
      for (const request of chunks(name, data, MiB)) {
        if (sent === 4) {
          await new Promise((r) => setTimeout(r, 200)); // let the server record what it has
          throw new Error('connection lost');
        }
        sent++;
        yield request;
      }
    }
    await expect(bs().write(interrupted())).rejects.toThrow('connection lost');

    let status = await bs().queryWriteStatus({ resourceName: name });
    for (let i = 0; i < 50 && status.committedSize !== 4n * BigInt(MiB); i++) {
      await new Promise((r) => setTimeout(r, 50));
      status = await bs().queryWriteStatus({ resourceName: name });
    }
    // Chunks still in flight when the client gave up may never have reached the server; a client resumes
    // from whatever the server reports, so that is what is checked (on a loaded machine it can be < 4 MiB).
    const committed = Number(status.committedSize);
    expect(status.complete).toBe(false);
    expect(committed).toBeGreaterThan(0);
    expect(committed).toBeLessThanOrEqual(4 * MiB);
    expect(committed % MiB).toBe(0);

    const reply = await bs().write(chunks(name, data, MiB, committed));
    expect(reply.committedSize).toBe(BigInt(data.byteLength));
    expect(sha256(await readAll(server.clients, `blobs/${hash}/${data.byteLength}`))).toBe(hash);
    expect(await bs().queryWriteStatus({ resourceName: name })).toMatchObject({
      committedSize: BigInt(data.byteLength),
      complete: true,
    });
    const fresh = await bs().queryWriteStatus({ resourceName: `uploads/other/blobs/${digestOf('nope').hash}/4` });
    expect(fresh).toMatchObject({ committedSize: 0n, complete: false });
  });

  it('keeps the bytes of a stream that ends without finish_write', async () => {
    const data = randomBytes(3 * MiB, 9);
    const { hash } = digestOf(data);
    const name = `uploads/no-finish/blobs/${hash}/${data.byteLength}`;
    const requests = [...chunks(name, data, MiB)].slice(0, 2);
    const ended = await codeOf(bs().write(requests));
    expect(ended.details).toMatch(/without finish_write/);
    expect((await bs().queryWriteStatus({ resourceName: name })).committedSize).toBe(2n * BigInt(MiB));
    await bs().write(chunks(name, data, MiB, 2 * MiB));
    expect(sha256(await readAll(server.clients, `blobs/${hash}/${data.byteLength}`))).toBe(hash);
  });

  it('answers a Write of a blob already stored at once, with the full committed size', async () => {
    const data = randomBytes(8 * MiB, 11);
    const { hash } = digestOf(data);
    await bs().write(chunks(`uploads/first/blobs/${hash}/${data.byteLength}`, data));
    for (const [name, expected] of [
      [`uploads/again/blobs/${hash}/${data.byteLength}`, BigInt(data.byteLength)],
      // REAPI: -1 for a compressed upload, whose compressed length the server cannot know.
      [`uploads/again/compressed-blobs/zstd/${hash}/${data.byteLength}`, -1n],
    ] as const) {
      // The client sends the first chunk, then holds the rest back until it hears the reply.
      let sent = 0;
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      async function* requests() {
        yield { resourceName: name, writeOffset: 0n, data: data.subarray(0, 64 * 1024) };
        sent++;
        await held;
      }
      try {
        const reply = await bs().write(requests(), { timeoutMs: 10_000 });
        expect(reply.committedSize).toBe(expected);
        expect(sent).toBe(1);
      } finally {
        release();
      }
    }
  });

  describe('compressed-blobs/zstd', () => {
    const zstd = loadZstd()!;
    const compress = async (data: Uint8Array) => {
      const out: Uint8Array[] = [];
      for await (const c of new Blob([Buffer.from(data)]).stream().pipeThrough(zstd.compressor())) out.push(c);
      return Buffer.concat(out);
    };
    const decompress = (data: Uint8Array, size: number) => Buffer.from(zstd.decompress(data, size));

    it('writes compressed, reads both ways, and reads compressed from an offset', async () => {
      const data = Buffer.concat([Buffer.from('x'.repeat(3 * MiB)), randomBytes(MiB, 3)]);
      const { hash } = digestOf(data);
      const compressed = await compress(data);
      expect(compressed.byteLength).toBeLessThan(data.byteLength / 2);
      const reply = await bs().write(
        chunks(`uploads/z/compressed-blobs/zstd/${hash}/${data.byteLength}`, compressed, 64 * 1024),
      );
      expect(reply.committedSize).toBe(BigInt(compressed.byteLength));

      expect(sha256(await readAll(server.clients, `blobs/${hash}/${data.byteLength}`))).toBe(hash);
      const viaZstd = await readAll(server.clients, `compressed-blobs/zstd/${hash}/${data.byteLength}`);
      expect(sha256(decompress(viaZstd, data.byteLength))).toBe(hash);
      const fromOffset = await readAll(server.clients, `compressed-blobs/zstd/${hash}/${data.byteLength}`, {
        readOffset: 3n * BigInt(MiB),
      });
      expect(bytesOf(decompress(fromOffset, MiB))).toEqual(bytesOf(data.subarray(3 * MiB)));
      const limited = await codeOf(
        readAll(server.clients, `compressed-blobs/zstd/${hash}/${data.byteLength}`, { readLimit: 10n }),
      );
      expect(limited.code).toBe(grpc.status.INVALID_ARGUMENT);
      const done = await bs().queryWriteStatus({
        resourceName: `uploads/z/compressed-blobs/zstd/${hash}/${data.byteLength}`,
      });
      expect(done).toMatchObject({ committedSize: -1n, complete: true });
    });

    it('refuses compressed data that expands past the declared size, or is not zstd', async () => {
      const data = Buffer.from('y'.repeat(MiB));
      const compressed = await compress(data);
      const small = digestOf(data.subarray(0, 1000));
      const bomb = await codeOf(
        bs().write([
          { resourceName: `uploads/b/compressed-blobs/zstd/${small.hash}/1000`, data: compressed, finishWrite: true },
        ]),
      );
      expect(bomb.code).toBe(grpc.status.INVALID_ARGUMENT);
      const { hash } = digestOf(data);
      const junk = await codeOf(
        bs().write([
          {
            resourceName: `uploads/j/compressed-blobs/zstd/${hash}/${MiB}`,
            data: Buffer.from('junk'),
            finishWrite: true,
          },
        ]),
      );
      expect(junk.code).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });
});
