// BatchReadBlobs reads small blobs straight into its one reply (BlobStore.readSmallInto), asks `get` only for the
// others, and answers each blob truthfully: exact bytes, and NOT_FOUND for a blob missing, removed behind the store's
// back or of another size, never another blob's bytes or old memory.
import * as grpc from '@grpc/grpc-js';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_SHA256 } from '../../shared/digest.ts';
import { DiskStore } from '../../shared/storage/disk.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { verifying } from '../../shared/storage/verifying.ts';
import { digestOf, randomBytes, reachableTempDir, startTestServer, type TestServer } from './helpers.ts';

const KiB = 1024;

/** Blobs of the sizes given, distinct, stored through BatchUpdateBlobs. */
async function upload(server: TestServer, sizes: number[], seed: number): Promise<Uint8Array[]> {
  const blobs = sizes.map((size, i) => randomBytes(size, seed + i));
  const reply = await server.clients.cas.batchUpdateBlobs({
    requests: blobs.map((data) => ({ digest: digestOf(data), data })),
  });
  expect(reply.responses.map((r) => r.status?.code)).toEqual(blobs.map(() => grpc.status.OK));
  return blobs;
}

/** The file of a stored blob under a disk store's folder. */
function fileOf(storeDir: string, data: Uint8Array): string {
  const hash = digestOf(data).hash;
  return join(storeDir, (readdirSync(storeDir, { recursive: true }) as string[]).find((f) => f.endsWith(hash))!);
}

describe('BatchReadBlobs over the disk store, as calls to the store', () => {
  let server: TestServer;
  let storeDir: string;
  const into: ArrayBufferLike[] = [];
  const gets: string[] = [];
  beforeAll(async () => {
    storeDir = reachableTempDir('larder-batch-read-store-');
    const disk = verifying(await DiskStore.open({ path: storeDir, maxBytes: 64 << 20 }));
    // The real disk store, its reads recorded.
    const recorded: BlobStore = {
      ...disk,
      get: (key) => {
        gets.push(key.hash);
        return disk.get(key);
      },
      readSmallInto: (key, buffer, at, size) => {
        into.push(buffer.buffer);
        return disk.readSmallInto!(key, buffer, at, size);
      },
    };
    server = await startTestServer({ store: recorded });
  });
  afterAll(async () => {
    await server.stop();
    rmSync(storeDir, { recursive: true, force: true });
  });

  it('reads every small blob into one buffer, with no get, and the bytes are exact', async () => {
    const blobs = await upload(
      server,
      Array.from({ length: 300 }, (_, i) => 1 + ((i * 97) % (2 * KiB))),
      1,
    );
    into.length = 0;
    gets.length = 0;
    const read = await server.clients.cas.batchReadBlobs({ digests: blobs.map(digestOf) });
    expect(read.responses.map((r) => r.status?.code ?? 0)).toEqual(blobs.map(() => grpc.status.OK));
    expect(read.responses.map((r) => r.digest?.hash)).toEqual(blobs.map((b) => digestOf(b).hash));
    for (const [i, r] of read.responses.entries()) expect(Buffer.from(r.data).equals(blobs[i]!)).toBe(true);
    expect(gets).toEqual([]);
    expect(into).toHaveLength(300);
    expect(new Set(into).size).toBe(1); // one reply buffer for all of them
    expect((await server.clients.cas.batchReadBlobs({ digests: [] })).responses).toEqual([]);
  });

  it('asks get for a large blob, and answers a removed, a grown and an unknown blob NOT_FOUND', async () => {
    const [small, large, removed, grown, other] = await upload(server, [KiB, 200 * KiB, KiB, KiB, 2 * KiB], 500);
    rmSync(fileOf(storeDir, removed!));
    writeFileSync(fileOf(storeDir, grown!), Buffer.concat([grown!, Buffer.from('behind its back')]));
    const unknown = randomBytes(KiB, 999);
    const empty = { hash: EMPTY_SHA256, sizeBytes: 0n };
    gets.length = 0;
    const asked = [small!, large!, removed!, grown!, unknown, other!];
    const read = await server.clients.cas.batchReadBlobs({ digests: [...asked.map(digestOf), empty] });
    expect(read.responses.map((r) => r.status?.code ?? 0)).toEqual([
      grpc.status.OK,
      grpc.status.OK,
      grpc.status.NOT_FOUND,
      grpc.status.NOT_FOUND,
      grpc.status.NOT_FOUND,
      grpc.status.OK,
      grpc.status.OK,
    ]);
    const expected = [
      small!,
      large!,
      new Uint8Array(0),
      new Uint8Array(0),
      new Uint8Array(0),
      other!,
      new Uint8Array(0),
    ];
    for (const [i, r] of read.responses.entries()) expect(Buffer.from(r.data).equals(expected[i]!)).toBe(true);
    expect(read.responses[2]!.status?.message).toMatch(/not found/);
    // The large one streamed by get; the others get was asked about only because they were not read.
    expect(gets.sort()).toEqual([large!, removed!, grown!, unknown].map((b) => digestOf(b).hash).sort());
  });
});

describe('BatchReadBlobs over a store without readSmallInto', () => {
  let server: TestServer;
  let storeDir: string;
  beforeAll(async () => {
    storeDir = reachableTempDir('larder-batch-read-plain-');
    const { readSmallInto: _, ...plain } = verifying(await DiskStore.open({ path: storeDir, maxBytes: 64 << 20 }));
    server = await startTestServer({ store: plain });
  });
  afterAll(async () => {
    await server.stop();
    rmSync(storeDir, { recursive: true, force: true });
  });

  it('reads every blob with get, exactly, and answers a missing one NOT_FOUND', async () => {
    const blobs = await upload(server, [10, KiB, 100 * KiB], 700);
    const unknown = randomBytes(KiB, 998);
    const read = await server.clients.cas.batchReadBlobs({ digests: [...blobs, unknown].map(digestOf) });
    expect(read.responses.map((r) => r.status?.code ?? 0)).toEqual([0, 0, 0, grpc.status.NOT_FOUND]);
    for (const [i, b] of blobs.entries()) expect(Buffer.from(read.responses[i]!.data).equals(b)).toBe(true);
  });
});
