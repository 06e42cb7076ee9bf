import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { blobKey } from '../../shared/digest.ts';
import { DiskStore } from '../../shared/storage/disk.ts';
import { verifying } from '../../shared/storage/verifying.ts';
import { collect, streamOf } from '../../shared/storage/streams.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { sha256 } from '../helpers/http.ts';
import { describeStoreContract } from './store-contract.ts';
import { bytesOf } from '../helpers/bytes.ts';
import { watchDatasync } from '../helpers/datasync-watch.ts';

const dirs: Array<{ remove: () => void }> = [];
const freshDir = () => {
  const dir = tempDir();
  dirs.push(dir);
  return dir.path;
};
afterAll(() => {
  for (const d of dirs) d.remove();
});

describeStoreContract('disk', { open: (budget) => DiskStore.open({ path: freshDir(), maxBytes: budget }) });

describe('disk store', () => {
  const cas = (data: Uint8Array) => blobKey('', 'cas', sha256(data));

  it("reads a stored file into a BYOB reader's own buffer, and to a default reader as before", async () => {
    const store = await DiskStore.open({ path: freshDir(), maxBytes: 1 << 24 });
    const blob = randomBytes(300 * 1024); // over one read: the stream is read in parts
    await store.put(cas(blob), streamOf(blob), blob.byteLength);

    const byob = (await store.get(cas(blob)))!.body.getReader({ mode: 'byob' });
    let buffer = new ArrayBuffer(blob.byteLength + 10);
    let filled = 0;
    for (let reads = 0; reads < 100; reads++) {
      const { done, value } = await byob.read(new Uint8Array(buffer, filled));
      buffer = value!.buffer as ArrayBuffer; // the read took the buffer over and hands it back
      if (done) break;
      expect(value.byteOffset).toBe(filled); // written where it was asked to be
      filled += value.byteLength;
    }
    expect(filled).toBe(blob.byteLength);
    expect(Buffer.compare(Buffer.from(buffer, 0, filled), blob)).toBe(0);

    expect(Buffer.compare(await collect((await store.get(cas(blob)))!.body, blob.byteLength + 1), blob)).toBe(0);
  });

  it('syncs a streamed upload ahead while it is still coming in, and stores it whole', async () => {
    const store = await DiskStore.open({ path: freshDir(), maxBytes: 1 << 26 });
    const blob = randomBytes(9 * 1024 * 1024);
    const syncs = await watchDatasync(freshDir());
    try {
      let feed!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          feed = controller;
        },
      });
      const stored = store.put(cas(blob), body, blob.byteLength);
      // All but the last MiB, in the 64 KiB pieces a socket gives; the body stays open until the sync is seen.
      for (let at = 0; at < blob.byteLength - (1 << 20); at += 1 << 16) feed.enqueue(blob.subarray(at, at + (1 << 16)));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        syncs.first,
        new Promise(
          (_, reject) => (timer = setTimeout(() => reject(new Error('no sync before the body ended')), 10_000)),
        ),
      ]).finally(() => clearTimeout(timer));
      feed.enqueue(blob.subarray(blob.byteLength - (1 << 20)));
      feed.close();
      await stored;
      // Ahead, then the whole file at the end.
      expect(syncs.calls()).toBeGreaterThanOrEqual(2);
    } finally {
      syncs.restore();
    }
    expect(Buffer.compare(await collect((await store.get(cas(blob)))!.body, blob.byteLength + 1), blob)).toBe(0);
  });

  it('rebuilds its index after a restart, oldest first', async () => {
    const path = freshDir();
    const first = await DiskStore.open({ path, maxBytes: 3000 });
    const blobs = Array.from({ length: 3 }, () => randomBytes(1000));
    for (const blob of blobs) {
      await first.put(cas(blob), streamOf(blob), 1000);
      await new Promise((r) => setTimeout(r, 20)); // distinct mtimes
    }
    const second = await DiskStore.open({ path, maxBytes: 3000 });
    expect(second.count).toBe(3);
    expect(second.bytes).toBe(3000);
    const extra = randomBytes(1000);
    await second.put(cas(extra), streamOf(extra), 1000);
    expect(await second.stat(cas(blobs[0]!))).toBeNull(); // the oldest went first
    expect(await second.stat(cas(blobs[2]!))).toBe(1000);
  });

  it('shrinks to a smaller budget at start-up', async () => {
    const path = freshDir();
    const big = await DiskStore.open({ path, maxBytes: 10_000 });
    for (let i = 0; i < 5; i++) {
      const blob = randomBytes(1000);
      await big.put(cas(blob), streamOf(blob), 1000);
    }
    const small = await DiskStore.open({ path, maxBytes: 2500 });
    expect(small.bytes).toBe(2000);
    expect(small.count).toBe(2);
  });

  it('discards unfinished uploads left in tmp/ by a crash (or an older version), and keeps those of live processes', async () => {
    const path = freshDir();
    await DiskStore.open({ path, maxBytes: 1 << 20 });
    const [live] = readdirSync(join(path, 'tmp')); // this process's own folder: its owner is running
    writeFileSync(join(path, 'tmp', live!, 'in-flight'), randomBytes(500));
    writeFileSync(join(path, 'tmp', 'half-written-upload'), randomBytes(500));
    // A crashed process's folder; its PID is ours, but with another start time: a reused PID, so it is dead.
    const dead = `p${process.pid}-1`;
    mkdirSync(join(path, 'tmp', dead));
    writeFileSync(join(path, 'tmp', dead, 'half-written-upload'), randomBytes(500));
    const store = await DiskStore.open({ path, maxBytes: 1 << 20 });
    expect(readdirSync(join(path, 'tmp'))).toEqual([live]);
    expect(readdirSync(join(path, 'tmp', live!))).toEqual(['in-flight']);
    expect(store.count).toBe(0);
  });

  it('stores one blob written by 20 writers at once, counted once', async () => {
    const store = await DiskStore.open({ path: freshDir(), maxBytes: 1 << 24 });
    const data = randomBytes(100_000);
    await Promise.all(Array.from({ length: 20 }, () => store.put(cas(data), streamOf(data), data.length)));
    expect(store.count).toBe(1);
    expect(store.bytes).toBe(100_000);
    const blob = await store.get(cas(data));
    expect(bytesOf(await collect(blob!.body, 1 << 20))).toEqual(bytesOf(data));
  });

  it('locates a CAS blob it knows by its file, and leaves unknown, small (read whole) and action-cache blobs to get', async () => {
    const store = await DiskStore.open({ path: freshDir(), maxBytes: 1 << 20 });
    const blob = randomBytes(100_000);
    expect(await store.locate(cas(blob))).toBeNull();
    await store.put(cas(blob), blob, blob.length);
    const file = await store.locate(cas(blob));
    expect(file?.size).toBe(blob.length);
    expect(bytesOf(readFileSync(file!.path))).toEqual(bytesOf(blob));
    const small = randomBytes(64 * 1024);
    await store.put(cas(small), small, small.length);
    expect(await store.locate(cas(small))).toBeNull();
    expect((await store.get(cas(small)))?.bytes).toBeDefined();
    const ac = blobKey('', 'ac', sha256(randomBytes(8)));
    await store.put(ac, blob, blob.length);
    expect(await store.locate(ac)).toBeNull();
    await store.close();
  });

  it("reads a small blob it knows into the caller's buffer, exactly, and leaves to get what is unknown, missing, of another size or large", async () => {
    const path = freshDir();
    const store = verifying(await DiskStore.open({ path, maxBytes: 1 << 20 }));
    const fileOf = (data: Uint8Array) =>
      join(path, (readdirSync(path, { recursive: true }) as string[]).find((f) => f.endsWith(cas(data).hash))!);
    const blob = randomBytes(1024);
    await store.put(cas(blob), blob, blob.length);
    const into = Buffer.alloc(2000, 0xee);
    expect(store.readSmallInto!(cas(blob), into, 100, blob.length)).toBe(true);
    expect(bytesOf(into.subarray(100, 100 + blob.length))).toEqual(bytesOf(blob));
    expect(into.subarray(0, 100).every((b) => b === 0xee)).toBe(true); // nothing before its room
    expect(() => store.readSmallInto!(cas(blob), into, 1000, blob.length)).toThrow(RangeError); // no byte after it

    // Asked at another size than it has: not read, and get says what is stored.
    expect(store.readSmallInto!(cas(blob), into, 0, blob.length - 1)).toBe(false);
    expect(store.readSmallInto!(cas(blob), into, 0, blob.length + 1)).toBe(false);

    // Its file made longer behind the store's back (the index still says 1024): not read.
    writeFileSync(fileOf(blob), Buffer.concat([blob, Buffer.from('more')]));
    expect(store.readSmallInto!(cas(blob), into, 0, blob.length)).toBe(false);
    // And removed: not read either, and now a miss.
    rmSync(fileOf(blob));
    expect(store.readSmallInto!(cas(blob), into, 0, blob.length)).toBe(false);
    expect(await store.get(cas(blob))).toBeNull();

    // Larger than it reads whole: left to get.
    const large = randomBytes(64 * 1024 + 1);
    await store.put(cas(large), large, large.length);
    expect(store.readSmallInto!(cas(large), Buffer.alloc(large.length + 1), 0, large.length)).toBe(false);

    // Not known to the index (never stored, or published by another process sharing the folder since this one last
    // caught up with it): left to get, which finds it.
    expect(store.readSmallInto!(cas(randomBytes(10)), into, 0, 10)).toBe(false);
    const other = await DiskStore.open({ path, maxBytes: 1 << 20 });
    const theirs = randomBytes(1500);
    await other.put(cas(theirs), theirs, theirs.length);
    expect(store.readSmallInto!(cas(theirs), into, 0, theirs.length)).toBe(false);
    expect(bytesOf((await store.get(cas(theirs)))!.bytes!)).toEqual(bytesOf(theirs));
    // Known from then on, and read.
    expect(store.readSmallInto!(cas(theirs), into, 0, theirs.length)).toBe(true);
    expect(bytesOf(into.subarray(0, theirs.length))).toEqual(bytesOf(theirs));
    await other.close();
    await store.close?.();
  });

  it('writes again an upload of a blob whose file was removed behind its back (its index may still vouch for it)', async () => {
    const path = freshDir();
    const store = verifying(await DiskStore.open({ path, maxBytes: 1 << 20 }));
    const blob = randomBytes(1000);
    await store.put(cas(blob), blob, 1000);
    const file = (readdirSync(path, { recursive: true }) as string[]).find((f) => f.endsWith(cas(blob).hash))!;
    rmSync(join(path, file));
    await store.put(cas(blob), blob, 1000);
    expect(await store.stat(cas(blob))).toBe(1000);
    expect(bytesOf(await collect((await store.get(cas(blob)))!.body, 1 << 20))).toEqual(bytesOf(blob));
    await store.close?.();
  });

  it('keeps serving a blob that is evicted while it is being read', async () => {
    const store = await DiskStore.open({ path: freshDir(), maxBytes: 1_000_000 });
    const data = randomBytes(900_000);
    await store.put(cas(data), streamOf(data), data.length);
    const reading = await store.get(cas(data));
    const other = randomBytes(900_000);
    await store.put(cas(other), streamOf(other), other.length); // evicts `data`
    expect(await store.stat(cas(data))).toBeNull();
    expect(bytesOf(await collect(reading!.body, 1 << 20))).toEqual(bytesOf(data));
  });
});

describe('disk store shared by two processes', () => {
  const cas = (data: Uint8Array) => blobKey('', 'cas', sha256(data));

  it('never answers "present" for a blob the other one evicted', async () => {
    const path = freshDir();
    const edge = await DiskStore.open({ path, maxBytes: 300_000 });
    const executor = await DiskStore.open({ path, maxBytes: 300_000 });
    const first = randomBytes(100_000);
    await edge.put(cas(first), streamOf(first), first.length);
    expect(await executor.stat(cas(first))).toBe(100_000); // now in the executor's index too
    for (let i = 0; i < 3; i++) {
      const more = randomBytes(100_000);
      await edge.put(cas(more), streamOf(more), more.length); // the edge evicts `first`
    }
    expect(await edge.stat(cas(first))).toBeNull();
    expect(await executor.stat(cas(first))).toBeNull();
    expect(await executor.get(cas(first))).toBeNull();
  });

  it("a second process starting on the folder leaves the first one's uploads in flight alone", async () => {
    const path = freshDir();
    const first = await DiskStore.open({ path, maxBytes: 1 << 24 });
    const data = randomBytes(300_000);
    let sendRest!: () => void;
    const resumed = new Promise<void>((resolve) => (sendRest = resolve));
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(data.subarray(0, 100_000));
        await resumed;
        controller.enqueue(data.subarray(100_000));
        controller.close();
      },
    });
    const upload = first.put(cas(data), body, data.length);
    // The first process's temp file exists; now another process starts on the same folder.
    await DiskStore.open({ path, maxBytes: 1 << 24 });
    sendRest();
    await upload;
    const blob = await first.get(cas(data));
    expect(bytesOf(await collect(blob!.body, 1 << 20))).toEqual(bytesOf(data));
  });

  it('keeps one budget for the folder, not one each', async () => {
    const path = freshDir();
    const edge = await DiskStore.open({ path, maxBytes: 300_000 });
    const executor = await DiskStore.open({ path, maxBytes: 300_000 });
    for (let i = 0; i < 6; i++) {
      const blob = randomBytes(100_000);
      await (i % 2 === 0 ? edge : executor).put(cas(blob), streamOf(blob), blob.length);
    }
    const onDisk = readdirSync(join(path, 'blobs'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(onDisk.length).toBeLessThanOrEqual(3);
    expect(edge.bytes).toBeLessThanOrEqual(300_000);
    expect(executor.bytes).toBeLessThanOrEqual(300_000);
  });

  it('sees the blobs the other one wrote, at once', async () => {
    const path = freshDir();
    const edge = await DiskStore.open({ path, maxBytes: 1 << 20 });
    const executor = await DiskStore.open({ path, maxBytes: 1 << 20 });
    const data = randomBytes(5000);
    await edge.put(cas(data), streamOf(data), data.length);
    expect(await executor.stat(cas(data))).toBe(5000);
    const blob = await executor.get(cas(data));
    expect(bytesOf(await collect(blob!.body, 1 << 20))).toEqual(bytesOf(data));

    const other = randomBytes(5000);
    await executor.put(cas(other), streamOf(other), other.length);
    expect(await (await edge.get(cas(other)))?.size).toBe(5000);
  });
});

describe('disk store: action-cache entries, whose size the key does not fix', () => {
  const ac = blobKey('', 'ac', sha256('some action'));
  const read = async (store: DiskStore) => {
    const blob = await store.get(ac);
    const bytes = Buffer.from(await collect(blob!.body, 1 << 22));
    return { size: blob!.size, bytes };
  };

  it.each([
    ['larger', 100_000, 300_000],
    ['smaller', 300_000, 100_000],
    ['from small to large', 1000, 200_000],
    ['from large to small', 200_000, 1000],
    ['small but larger', 1000, 2000],
    ['small but smaller', 2000, 1000],
  ])('reads an entry whole after another process replaced it with a %s one', async (_, before, after) => {
    const path = freshDir();
    const edge = await DiskStore.open({ path, maxBytes: 1 << 24 });
    const executor = await DiskStore.open({ path, maxBytes: 1 << 24 });
    const first = randomBytes(before);
    await edge.put(ac, streamOf(first), first.length);
    expect(bytesOf((await read(edge)).bytes)).toEqual(bytesOf(first));
    const second = randomBytes(after);
    await executor.put(ac, streamOf(second), second.length);
    const got = await read(edge);
    expect(got.size).toBe(after);
    expect(bytesOf(got.bytes)).toEqual(bytesOf(second));
    expect(await edge.stat(ac)).toBe(after);
  });
});

describe('disk store: statMany, answered from the index', () => {
  const hash = sha256('one hash, three blobs');
  // One hash under three keys, each with its own size: a lookup that confused them would answer a wrong size.
  const keys = [blobKey('', 'cas', hash), blobKey('team/a', 'cas', hash), blobKey('', 'ac', hash)];
  const sizes = [1000, 2000, 3000];
  const putAll = async (store: DiskStore) => {
    for (const [i, key] of keys.entries()) await store.put(key, randomBytes(sizes[i]!), sizes[i]!);
  };

  it('tells apart blobs of one hash in another instance or key space, and learns of their eviction by another process', async () => {
    const path = freshDir();
    const edge = await DiskStore.open({ path, maxBytes: 10_000 });
    const executor = await DiskStore.open({ path, maxBytes: 10_000 });
    await putAll(edge);
    expect(await edge.statMany(keys)).toEqual(sizes);
    expect(await executor.statMany(keys)).toEqual(sizes); // learnt through the ledger
    const big = randomBytes(9000);
    await edge.put(blobKey('', 'cas', sha256(big)), big, big.length); // evicts all three
    for (const key of keys) expect(await edge.stat(key)).toBeNull();
    expect(await executor.statMany(keys)).toEqual([null, null, null]);
    expect(await executor.statMany([blobKey('', 'cas', sha256(big))])).toEqual([9000]);
  });

  it('checks again, a few hundred per turn of the event loop, what it has not seen for a minute', async () => {
    const path = freshDir();
    const store = await DiskStore.open({ path, maxBytes: 100_000 });
    const blobs = Array.from({ length: 600 }, (_, i) => Buffer.from(`blob ${i}`));
    const blobKeys = blobs.map((b) => blobKey('', 'cas', sha256(b)));
    for (const [i, key] of blobKeys.entries()) await store.put(key, blobs[i]!, blobs[i]!.length);
    // Deleted behind larder's back (no ledger news): within the minute the index still vouches for it.
    const gone = blobKeys[7]!;
    rmSync(join(path, 'blobs', '_', 'cas', gone.hash.slice(0, 2), gone.hash));
    expect((await store.statMany([gone]))[0]).toBe(blobs[7]!.length);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 61_000);
      let turns = 0;
      const counting = setInterval(() => turns++, 0);
      const sizes = await store.statMany(blobKeys).finally(() => clearInterval(counting));
      expect(sizes).toEqual(blobs.map((b, i) => (i === 7 ? null : b.length)));
      expect(turns).toBeGreaterThan(0); // the event loop was served between the checks
    } finally {
      vi.useRealTimers();
    }
    await store.close();
  });

  it('knows every blob on disk after a restart, and evicts a file found where its name does not belong', async () => {
    const path = freshDir();
    const before = await DiskStore.open({ path, maxBytes: 10_000 });
    await putAll(before);
    await before.close();
    // Left by hand in the default instance's CAS folder, under a folder its name does not start with.
    const stray = join(path, 'blobs', '_', 'cas', '00', 'ff'.padEnd(64, '0'));
    mkdirSync(join(stray, '..'), { recursive: true });
    writeFileSync(stray, randomBytes(500));
    utimesSync(stray, 1, 1); // the least recently used
    const after = await DiskStore.open({ path, maxBytes: 6_000 }); // 6,500 bytes found: the stray file goes
    expect(await after.statMany(keys)).toEqual(sizes);
    expect(existsSync(stray)).toBe(false);
    expect(after.bytes).toBe(6000);
  });
});
