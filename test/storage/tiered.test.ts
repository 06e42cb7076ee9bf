// tiered(front, back) with real memory stores on both sides; a small switchable wrapper stands in for a back
// tier that is down. The tiers-over-S3 shapes run the same contract in s3.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { blobKey, type BlobKey } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import { DiskStore } from '../../shared/storage/disk.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import { tempDir } from '../helpers/edge-process.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { bodyStream, collect, streamOf } from '../../shared/storage/streams.ts';
import { TieredStore } from '../../shared/storage/tiered.ts';
import { verifying } from '../../shared/storage/verifying.ts';
import { sha256 } from '../helpers/http.ts';
import { describeStoreContract } from './store-contract.ts';
import { bytesOf } from '../helpers/bytes.ts';
import { larderCode } from '../helpers/errors.ts';

describeStoreContract('tiered(memory, memory)', {
  open: async (budget) =>
    new TieredStore({ front: new MemoryStore({ maxBytes: budget }), back: new MemoryStore({ maxBytes: budget }) }),
  // Each tier keeps its own LRU order (front hits never reach the back), so there is no one budget to check.
  bounded: false,
});

/** A real store that can be switched to fail every call, as a back tier that is down would. */
function switchable(inner: BlobStore) {
  const state = { down: false, calls: 0 };
  const guard = <T>(call: () => Promise<T>): Promise<T> => {
    state.calls++;
    return state.down ? Promise.reject(new LarderError('unavailable', 'back: down')) : call();
  };
  const store: BlobStore = {
    get: (key) => guard(() => inner.get(key)),
    stat: (key) => guard(() => inner.stat(key)),
    put: (key, body, size) =>
      state.down
        ? bodyStream(body)
            .cancel()
            .then(() => guard(() => Promise.resolve()))
        : guard(() => inner.put(key, body, size)),
  };
  return { store, state };
}

const key = (data: Uint8Array) => blobKey('', 'cas', sha256(data));
const read = async (store: BlobStore, k: BlobKey) => {
  const blob = await store.get(k);
  return blob === null ? null : Buffer.from(await collect(blob.body, 1 << 30));
};
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('tiered store', () => {
  it('fast hit: served by the front without asking the back', async () => {
    const front = new MemoryStore({ maxBytes: 1 << 20 });
    const back = switchable(new MemoryStore({ maxBytes: 1 << 20 }));
    const tiered = new TieredStore({ front, back: back.store });
    const data = randomBytes(1000);
    await front.put(key(data), streamOf(data), data.length);
    back.state.down = true;
    expect(bytesOf(await read(tiered, key(data)))).toEqual(bytesOf(data));
    expect(await tiered.stat(key(data))).toBe(1000);
    expect(back.state.calls).toBe(0);
  });

  it('slow hit fills fast: a back hit is streamed to the caller and copied into the front', async () => {
    const front = new MemoryStore({ maxBytes: 1 << 20 });
    const back = new MemoryStore({ maxBytes: 1 << 20 });
    const tiered = new TieredStore({ front, back });
    const data = randomBytes(100_000);
    await back.put(key(data), streamOf(data), data.length);
    expect(await front.stat(key(data))).toBeNull();
    expect(bytesOf(await read(tiered, key(data)))).toEqual(bytesOf(data));
    await settle();
    expect(bytesOf(await read(front, key(data)))).toEqual(bytesOf(data));
  });

  it('slow error propagates: a front miss with the back down is an error, not a miss', async () => {
    const back = switchable(new MemoryStore({ maxBytes: 1 << 20 }));
    const tiered = new TieredStore({ front: new MemoryStore({ maxBytes: 1 << 20 }), back: back.store });
    back.state.down = true;
    const data = randomBytes(10);
    for (const call of [() => tiered.get(key(data)), () => tiered.stat(key(data))]) {
      const err = await call().catch((e: unknown) => e);
      expect(larderCode(err)).toBe('unavailable');
    }
  });

  it('front-fill failure does not fail the read', async () => {
    const front = new MemoryStore({ maxBytes: 1000 }); // too small for the blob: its put refuses at once
    const back = new MemoryStore({ maxBytes: 1 << 20 });
    const data = randomBytes(50_000);
    await back.put(key(data), streamOf(data), data.length);
    expect(bytesOf(await read(new TieredStore({ front, back }), key(data)))).toEqual(bytesOf(data));

    // A front that fails halfway through the fill, after reading some of the bytes.
    const failing: BlobStore = {
      get: async () => null,
      stat: async () => null,
      put: async (_key, body) => {
        const reader = bodyStream(body).getReader();
        await reader.read();
        reader.releaseLock(); // walks away without cancelling: the tee must not wait for it
        throw new LarderError('internal', 'front: disk error');
      },
    };
    expect(bytesOf(await read(new TieredStore({ front: failing, back }), key(data)))).toEqual(bytesOf(data));
  });

  it("reads a small blob into the caller's memory from a disk front only, leaving a front miss to get", async () => {
    const dir = tempDir();
    try {
      const back = switchable(new MemoryStore({ maxBytes: 1 << 20 }));
      const tiered = new TieredStore({
        front: await DiskStore.open({ path: dir.path, maxBytes: 1 << 20 }),
        back: back.store,
      });
      const data = randomBytes(1000);
      await tiered.put(key(data), data, data.length);
      const calls = back.state.calls;
      back.state.down = true;
      const into = Buffer.alloc(1001);
      expect(tiered.readSmallInto!(key(data), into, 0, 1000)).toBe(true);
      expect(bytesOf(into.subarray(0, 1000))).toEqual(bytesOf(data));
      const onlyBack = randomBytes(1000);
      expect(tiered.readSmallInto!(key(onlyBack), into, 0, 1000)).toBe(false); // get asks the back
      expect(back.state.calls).toBe(calls);
      expect(
        new TieredStore({ front: new MemoryStore({ maxBytes: 1000 }), back: back.store }).readSmallInto,
      ).toBeUndefined();
      const broken = new TieredStore({
        front: {
          ...switchable(new MemoryStore({ maxBytes: 1000 })).store,
          readSmallInto: () => {
            throw new LarderError('internal', 'front: broken');
          },
        },
        back: back.store,
      });
      expect(broken.readSmallInto!(key(data), into, 0, 1000)).toBe(false); // a broken front is a miss
    } finally {
      dir.remove();
    }
  });

  it('a front that errors on reads counts as a miss', async () => {
    const back = new MemoryStore({ maxBytes: 1 << 20 });
    const data = randomBytes(1000);
    await back.put(key(data), streamOf(data), data.length);
    const broken: BlobStore = {
      get: () => Promise.reject(new LarderError('internal', 'front: broken')),
      stat: () => Promise.reject(new LarderError('internal', 'front: broken')),
      put: (_key, body) =>
        bodyStream(body)
          .cancel()
          .then(() => Promise.reject(new LarderError('internal', 'front: broken'))),
    };
    const tiered = new TieredStore({ front: broken, back });
    expect(await tiered.stat(key(data))).toBe(1000);
    expect(bytesOf(await read(tiered, key(data)))).toEqual(bytesOf(data));
  });

  it('writes through to both tiers and answers once the back has the blob', async () => {
    const front = new MemoryStore({ maxBytes: 1 << 20 });
    const back = new MemoryStore({ maxBytes: 1 << 20 });
    const data = randomBytes(10_000);
    await new TieredStore({ front, back }).put(key(data), streamOf(data), data.length);
    expect(await back.stat(key(data))).toBe(10_000);
    expect(await front.stat(key(data))).toBe(10_000);
  });

  it('a write the back refuses fails, and the front keeps nothing', async () => {
    const front = new MemoryStore({ maxBytes: 1 << 20 });
    const back = switchable(new MemoryStore({ maxBytes: 1 << 20 }));
    back.state.down = true;
    const data = randomBytes(10_000);
    const err = await new TieredStore({ front, back: back.store })
      .put(key(data), streamOf(data), data.length)
      .catch((e: unknown) => e);
    expect(larderCode(err)).toBe('unavailable');
    await settle();
    expect(await front.stat(key(data))).toBeNull();
  });

  it('a write the front refuses still succeeds', async () => {
    const front = new MemoryStore({ maxBytes: 100 });
    const back = new MemoryStore({ maxBytes: 1 << 20 });
    const data = randomBytes(10_000);
    await new TieredStore({ front, back }).put(key(data), streamOf(data), data.length);
    expect(await back.stat(key(data))).toBe(10_000);
  });

  it('a body the verifier rejects reaches neither tier', async () => {
    const front = new MemoryStore({ maxBytes: 1 << 20 });
    const back = new MemoryStore({ maxBytes: 1 << 20 });
    const data = randomBytes(10_000);
    const err = await verifying(new TieredStore({ front, back }))
      .put(key(data), streamOf(randomBytes(10_000)), 10_000)
      .catch((e: unknown) => e);
    expect(larderCode(err)).toBe('digest_mismatch');
    await settle();
    expect(await front.stat(key(data))).toBeNull();
    expect(await back.stat(key(data))).toBeNull();
  });
});
