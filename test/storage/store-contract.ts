/** The contract every BlobStore keeps (shared/storage/store.ts), as one suite run against each backend. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { blobKey, type BlobKind } from '../../shared/digest.ts';
import { statMany } from '../../shared/storage/stat-many.ts';
import type { BlobBody, BlobStore } from '../../shared/storage/store.ts';
import { collect, streamOf } from '../../shared/storage/streams.ts';
import { verifying } from '../../shared/storage/verifying.ts';
import { sha256 } from '../helpers/http.ts';
import { bytesOf } from '../helpers/bytes.ts';
import { larderCode } from '../helpers/errors.ts';

export interface StoreTarget {
  /** A fresh, empty store with room for at least `budget` bytes and at most a little more. */
  open(budget: number): Promise<BlobStore>;
  /** False for stores without a size budget of their own (S3, tiers ending in S3): the budget checks do not apply. */
  bounded?: boolean;
}

const key = (data: Uint8Array, kind: BlobKind = 'cas', instance = '') => blobKey(instance, kind, sha256(data));
const read = async (store: BlobStore, k: ReturnType<typeof key>) => {
  const blob = await store.get(k);
  return blob === null ? null : Buffer.from(await collect(blob.body, 1 << 30));
};
const failingStream = (first: Uint8Array) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(first);
      controller.error(new Error('client went away'));
    },
  });

/** Both forms of an upload's body (store.ts BlobBody): the checks must not depend on which one a caller uses. */
const BODY_FORMS: Array<[string, (bytes: Uint8Array) => BlobBody]> = [
  ['a stream', streamOf],
  ['whole bytes', (bytes) => bytes],
];

export function describeStoreContract(name: string, target: StoreTarget): void {
  describe(`${name}: store contract`, () => {
    it('answers a miss with null from get and stat', async () => {
      const store = await target.open(1 << 20);
      const k = key(randomBytes(10));
      expect(await store.get(k)).toBeNull();
      expect(await store.stat(k)).toBeNull();
    });

    it('serves back what was put, with its size', async () => {
      const store = await target.open(1 << 20);
      const data = randomBytes(70_000);
      await store.put(key(data), streamOf(data), data.length);
      expect(await store.stat(key(data))).toBe(data.length);
      const blob = await store.get(key(data));
      expect(blob?.size).toBe(data.length);
      expect(bytesOf(await collect(blob!.body, 1 << 20))).toEqual(bytesOf(data));
    });

    it('takes a body given whole (bytes, no stream), small and large', async () => {
      const store = await target.open(1 << 22);
      for (const data of [randomBytes(100), randomBytes(1_500_000)]) {
        await store.put(key(data), data, data.length);
        expect(await store.stat(key(data))).toBe(data.length);
        expect(bytesOf(await read(store, key(data)))).toEqual(bytesOf(data));
      }
    });

    it('answers a batch of stats in order: the size of what it just stored, null for the rest', async () => {
      const store = await target.open(1 << 20);
      const stored = randomBytes(300);
      await store.put(key(stored), stored, stored.length);
      const absent = key(randomBytes(10));
      expect(await statMany(store, [absent, key(stored), key(stored, 'cas', 'team-a')], 4)).toEqual([null, 300, null]);
    });

    it('keeps instances and key spaces apart', async () => {
      const store = await target.open(1 << 20);
      const data = randomBytes(100);
      await store.put(key(data, 'cas', 'team-a'), streamOf(data), data.length);
      expect(await store.stat(key(data, 'cas', 'team-a'))).toBe(100);
      expect(await store.stat(key(data, 'cas', 'team-b'))).toBeNull();
      expect(await store.stat(key(data, 'cas'))).toBeNull();
      expect(await store.stat(key(data, 'ac', 'team-a'))).toBeNull();
    });

    it('publishes nothing when the body fails midway', async () => {
      const store = await target.open(1 << 20);
      const data = randomBytes(1000);
      await expect(store.put(key(data), failingStream(data.subarray(0, 500)), 1000)).rejects.toThrow();
      expect(await store.stat(key(data))).toBeNull();
      expect(await store.get(key(data))).toBeNull();
    });

    it('replaces an action-cache entry with a newer one', async () => {
      const store = await target.open(1 << 20);
      const k = blobKey('', 'ac', sha256('some action'));
      await store.put(k, streamOf(Buffer.from('first')), 5);
      await store.put(k, streamOf(Buffer.from('second!')), 7);
      expect((await read(store, k))?.toString()).toBe('second!');
    });

    // Registered only where it applies (the S3 tier has no budget), like the HTTP suite's flat-memory check.
    if (target.bounded !== false)
      it('evicts the least recently used blobs to stay within its budget', async () => {
        const store = await target.open(3 * 1000);
        const [a, b, c, d] = Array.from({ length: 4 }, () => randomBytes(1000));
        for (const blob of [a!, b!, c!]) await store.put(key(blob), streamOf(blob), 1000);
        await read(store, key(a!)); // a is now more recent than b
        await store.put(key(d!), streamOf(d!), 1000);
        expect(await store.stat(key(b!))).toBeNull();
        expect(await store.stat(key(a!))).toBe(1000);
        expect(await store.stat(key(c!))).toBe(1000);
        expect(await store.stat(key(d!))).toBe(1000);
      });

    if (target.bounded !== false)
      it('refuses a blob larger than its whole budget', async () => {
        const store = await target.open(1000);
        const data = randomBytes(2000);
        const err = await store.put(key(data), streamOf(data), data.length).catch((e: unknown) => e);
        expect(larderCode(err)).toBe('no_space');
        expect(await store.stat(key(data))).toBeNull();
      });

    for (const [form, as] of BODY_FORMS) {
      describe(`behind verifying(), bodies as ${form}`, () => {
        it('refuses bytes that do not match the hash, and stores nothing', async () => {
          const store = verifying(await target.open(1 << 20));
          const data = randomBytes(1000);
          const k = key(data);
          const err = await store.put(k, as(randomBytes(1000)), 1000).catch((e: unknown) => e);
          expect(larderCode(err)).toBe('digest_mismatch');
          expect(await store.stat(k)).toBeNull();
        });

        it('refuses bodies shorter or longer than declared', async () => {
          const store = verifying(await target.open(1 << 20));
          const data = randomBytes(1000);
          for (const declared of [999, 1001]) {
            const err = await store.put(key(data), as(data), declared).catch((e: unknown) => e);
            expect(larderCode(err)).toBe('size_mismatch');
          }
          expect(await store.stat(key(data))).toBeNull();
        });

        it('accepts a re-upload of a stored blob without storing it twice', async () => {
          const store = verifying(await target.open(1 << 20));
          const data = randomBytes(1000);
          await store.put(key(data), as(data), 1000);
          await store.put(key(data), as(data), 1000);
          expect(bytesOf(await read(store, key(data)))).toEqual(bytesOf(data));
          const err = await store.put(key(data), as(randomBytes(1000)), 1000).catch((e: unknown) => e);
          expect(larderCode(err)).toBe('digest_mismatch');
        });
      });
    }
  });
}
