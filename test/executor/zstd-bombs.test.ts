// Hostile zstd input against a real `larder executor` process: hand-made frames of 32 KiB that each
// expand to 1 GiB. Whatever the client sends, the server's memory stays within a stated bound, the calls
// fail with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, and nothing is stored.
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { uploadLeftovers } from '../helpers/files.ts';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadZstd } from '../../executor/reapi/zstd.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { type RssWatch, watchRss } from '../helpers/proc.ts';
import { IN_CI } from '../helpers/tools.ts';
import { type Clients, clientsFor, codeOf, type ExecutorProcess, sha256, startExecutorProcess } from './helpers.ts';

const GiB = 1024 ** 3;
/**
 * What the server may grow by, over its resident size after start-up, while the bombs go off. Node frees
 * garbage Buffers only after about 64 MiB of them were allocated since its last collection, so any streaming
 * path shows growth up to about that; four streams at once on a busy machine reach it, hence the headroom.
 * Without bounded decoding, one bomb alone grew the server by over 1 GiB.
 */
const BOUND_MIB = Number(process.env.BOMB_BOUND_MIB ?? 96);
const haveZstd = loadZstd() !== null;
if (!haveZstd && IN_CI)
  throw new Error('CI=true and zstd-napi is not installed (npm ci builds it from source with node-gyp)');

/**
 * One zstd frame that declares (and really expands to) `size` bytes of `byte`, made of RLE blocks of
 * 128 KiB, each 4 bytes on the wire: 1 GiB costs 32 KiB. A 128 KiB window (which any decoder accepts),
 * a 4-byte content size, no checksum.
 */
function bombFrame(size: number, byte = 0x61): Buffer {
  const BLOCK = 128 * 1024;
  const HEADER = 4 + 1 + 1 + 4;
  const blocks = Math.ceil(size / BLOCK);
  const frame = Buffer.alloc(HEADER + blocks * 4);
  frame.writeUInt32LE(0xfd2fb528, 0);
  frame[4] = 2 << 6; // Frame_Content_Size in 4 bytes, with a window descriptor
  frame[5] = 7 << 3; // window 2^(10+7) = 128 KiB
  frame.writeUInt32LE(size, 6);
  for (let i = 0; i < blocks; i++) {
    const last = i === blocks - 1 ? 1 : 0;
    const regenerated = Math.min(BLOCK, size - i * BLOCK);
    const header = last | (1 << 1) | (regenerated << 3); // Block_Type 1 = RLE
    const at = HEADER + i * 4;
    frame.writeUIntLE(header, at, 3);
    frame[at + 3] = byte;
  }
  return frame;
}

/** Fails past the bound; else logs the growth so far (the figure the closing note quotes). */
function report(watch: RssWatch): void {
  const grown = watch.check();
  const name = expect.getState().currentTestName;
  console.log(
    `${name}: peak RSS +${grown.toFixed(1)} MiB over ${watch.baselineMiB.toFixed(1)} MiB (bound ${BOUND_MIB} MiB)`,
  );
}

/** Digests the bombs are sent under: 1 GiB, with hashes that are not the expansion's. */
const bombDigest = (i: number) => ({ hash: sha256(`not the bomb ${i}`), sizeBytes: BigInt(GiB) });

describe.runIf(haveZstd)('zstd bombs against a real executor', () => {
  const dir = tempDir('larder-zstd-bombs-');
  const store = join(dir.path, 'store');
  let executor: ExecutorProcess;
  let clients: Clients;
  let watch: RssWatch;
  const bomb = bombFrame(GiB);

  beforeAll(async () => {
    executor = await startExecutorProcess(['--store', `disk:${store}`]);
    clients = clientsFor(`127.0.0.1:${executor.port}`);
    // Warm up every code path once, so the baseline holds what a served call costs anyway.
    await clients.capabilities.getCapabilities({});
    await clients.cas.batchUpdateBlobs({
      requests: [{ digest: { hash: sha256('warm'), sizeBytes: 4n }, data: Buffer.from('warm') }],
    });
    watch = watchRss(executor.pid, BOUND_MIB);
  }, 60_000);

  afterAll(async () => {
    watch?.stop();
    clients?.close();
    await executor?.stop();
    dir.remove();
  });

  it('is 32 KiB on the wire and really expands to 1 GiB', () => {
    expect(bomb.byteLength).toBeLessThanOrEqual(32 * 1024 + 10);
    const z = loadZstd()!;
    // A bound below its expansion stops it there (the check these tests rely on server-side too).
    expect(() => z.decompress(bomb, 8 * 1024 * 1024)).toThrow(/expands past/);
  });

  it('refuses 8 bombs in one BatchUpdateBlobs by their declared sizes', async () => {
    const requests = Array.from({ length: 8 }, (_, i) => ({
      digest: bombDigest(i),
      data: bomb,
      compressor: 1 /* ZSTD */,
    }));
    const result = await clients.cas.batchUpdateBlobs({ requests }).then(
      (reply) => reply.responses.map((r) => r.status?.code),
      (err: grpc.ServiceError) => [err.code],
    );
    report(watch);
    for (const code of result) expect([grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED]).toContain(code);
  }, 120_000);

  const writeBomb = (i: number) =>
    clients.bytestream.write([
      {
        resourceName: `uploads/${randomUUID()}/compressed-blobs/zstd/${bombDigest(i).hash}/${GiB}`,
        data: bomb,
        finishWrite: true,
      },
    ]);

  it('refuses one 32 KiB ByteStream Write that expands to 1 GiB', async () => {
    const { code, details } = await codeOf(writeBomb(100));
    report(watch);
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(details).toMatch(/sha256 mismatch/);
  }, 120_000);

  it('refuses four such Writes at once', async () => {
    const results = await Promise.all([101, 102, 103, 104].map((i) => codeOf(writeBomb(i))));
    report(watch);
    for (const { code } of results) expect(code).toBe(grpc.status.INVALID_ARGUMENT);
  }, 300_000);

  it('stored nothing and kept no temp files, within the memory bound', async () => {
    const digests = [
      ...Array.from({ length: 8 }, (_, i) => bombDigest(i)),
      ...[100, 101, 102, 103, 104].map(bombDigest),
    ];
    const { missingBlobDigests } = await clients.cas.findMissingBlobs({ blobDigests: digests });
    expect(missingBlobDigests).toHaveLength(digests.length);
    expect(uploadLeftovers(join(store, 'tmp'))).toEqual([]);
    report(watch);
  });
});
