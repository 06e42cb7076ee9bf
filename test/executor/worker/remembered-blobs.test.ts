/**
 * RememberedBlobs in front of a real store's CAS: what was seen present, read or uploaded in an instance is not
 * asked of the store again, and never counts for another instance.
 */
import { describe, expect, it } from 'vitest';
import { RememberedBlobs } from '../../../executor/worker/remembered-blobs.ts';
import { storeCas } from '../../../executor/worker/store-cas.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { digestOf, memoryStore, putBlob } from './helpers.ts';

/** A store that also counts the existence questions it is asked (FindMissingBlobs comes down to these). */
function countingStats(inner: BlobStore & { gets: number }) {
  const store = {
    stats: 0,
    get gets() {
      return inner.gets;
    },
    get: inner.get.bind(inner),
    put: inner.put.bind(inner),
    stat: (key: Parameters<BlobStore['stat']>[0]) => {
      store.stats++;
      return inner.stat(key);
    },
  };
  return store;
}

describe('RememberedBlobs', () => {
  it('asks the CAS only about digests it has not seen present in that instance', async () => {
    const store = countingStats(memoryStore());
    const [a, b] = [await putBlob(store, 'a'), await putBlob(store, 'b')];
    const absent = digestOf('never stored');
    const cas = new RememberedBlobs().wrap(storeCas(store, ''), '');
    expect(await cas.findMissing([a, b, absent])).toEqual([absent]);
    expect(store.stats).toBe(3);
    expect(await cas.findMissing([a, b, absent])).toEqual([absent]);
    expect(store.stats).toBe(4); // only the absent one again
  });

  it('never lets one instance vouch for another', async () => {
    const store = countingStats(memoryStore());
    const a = await putBlob(store, 'in the default instance only');
    const remembered = new RememberedBlobs();
    expect(await remembered.wrap(storeCas(store, ''), '').findMissing([a])).toEqual([]);
    expect(await remembered.wrap(storeCas(store, 'other'), 'other').findMissing([a])).toEqual([a]);
    expect(await remembered.wrap(storeCas(store, 'other'), 'other').readBytes(a, 1024)).toBeNull();
  });

  it('reads a small blob once, and counts it present', async () => {
    const store = countingStats(memoryStore());
    const a = await putBlob(store, 'a Directory, say');
    const cas = new RememberedBlobs().wrap(storeCas(store, ''), '');
    const first = await cas.readBytes(a, 1024);
    expect(Buffer.from(first!).toString()).toBe('a Directory, say');
    expect(Buffer.from((await cas.readBytes(a, 1024))!).toString()).toBe('a Directory, say');
    expect(store.gets).toBe(1);
    expect(await cas.findMissing([a])).toEqual([]);
    expect(store.stats).toBe(0);
  });

  it('counts what it uploaded as present', async () => {
    const store = countingStats(memoryStore());
    const cas = new RememberedBlobs().wrap(storeCas(store, ''), '');
    const bytes = new TextEncoder().encode('an output');
    const d = digestOf(bytes);
    await cas.uploadBatch([{ digest: d, bytes }]);
    const statsAfterUpload = store.stats;
    expect(await cas.findMissing([d])).toEqual([]);
    expect(store.stats).toBe(statsAfterUpload);
  });
});
