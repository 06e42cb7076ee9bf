import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EMPTY_SHA256 } from '../../../shared/digest.ts';
import { MemoryStore } from '../../../shared/storage/memory.ts';
import { streamOf } from '../../../shared/storage/streams.ts';
import { verifying } from '../../../shared/storage/verifying.ts';
import { FileCache } from '../../../executor/worker/file-cache.ts';
import { storeCas } from '../../../executor/worker/store-cas.ts';
import { countingStore, digestOf, holdingCas, memoryStore, putBlob, tempDirs } from './helpers.ts';

const freshDir = tempDirs();
const mode = (path: string) => statSync(path).mode & 0o777;

async function setup(maxBytes = 1 << 20) {
  const store = memoryStore();
  const dir = freshDir();
  const cache = await FileCache.open({ dir, maxBytes });
  return { store, cas: storeCas(store, ''), dir, cache, out: freshDir() };
}

describe('FileCache', () => {
  it('fetches a file once for concurrent links and hard-links every destination to it', async () => {
    const { store, cas, cache, out } = await setup();
    const digest = await putBlob(store, randomBytes(50_000));
    const dests = Array.from({ length: 20 }, (_, i) => join(out, `copy-${i}`));
    const results = await Promise.all(dests.map((dest) => cache.link(digest, false, cas, dest)));
    expect(store.gets).toBe(1);
    expect(results.map((r) => r.outcome)).toEqual(dests.map(() => 'linked'));
    expect(results.filter((r) => r.fetched)).toHaveLength(1);
    const inode = statSync(cache.pathOf(digest, false)).ino;
    for (const dest of dests) expect(statSync(dest).ino).toBe(inode);
    expect(statSync(dests[0]!).nlink).toBe(21);
    // A later call is a hit.
    expect(await cache.link(digest, false, cas, join(out, 'later'))).toEqual({ outcome: 'linked', fetched: false });
    expect(store.gets).toBe(1);
  });

  it('keeps executable and plain copies of one digest apart, both read-only', async () => {
    const { store, cas, cache, out } = await setup();
    const digest = await putBlob(store, '#!/bin/sh\necho hi\n');
    await cache.link(digest, true, cas, join(out, 'tool'));
    await cache.link(digest, false, cas, join(out, 'data'));
    expect(cache.count).toBe(2);
    expect(cache.bytes).toBe(2 * digest.sizeBytes);
    expect(statSync(join(out, 'tool')).ino).not.toBe(statSync(join(out, 'data')).ino);
    expect(mode(join(out, 'tool'))).toBe(0o555);
    expect(mode(join(out, 'data'))).toBe(0o444);
    expect(mode(cache.pathOf(digest, true))).toBe(0o555);
    expect(mode(cache.pathOf(digest, false))).toBe(0o444);
    expect(store.gets).toBe(2);
  });

  it('evicts least recently used files past its budget, and staged links survive eviction', async () => {
    const { store, cas, cache, out } = await setup(250);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((x) => putBlob(store, x.repeat(100))));
    await cache.link(a!, false, cas, join(out, 'a1'));
    await cache.link(b!, false, cas, join(out, 'b1'));
    await cache.link(a!, false, cas, join(out, 'a2')); // a is now the most recently used
    await cache.link(c!, false, cas, join(out, 'c1'));
    expect(existsSync(cache.pathOf(b!, false)), cache.pathOf(b!, false)).toBe(false);
    expect(existsSync(cache.pathOf(a!, false)), cache.pathOf(a!, false)).toBe(true);
    expect(cache.bytes).toBe(200);
    expect(readFileSync(join(out, 'b1'), 'utf8')).toBe('b'.repeat(100)); // the staged link kept the inode
    const gets = store.gets;
    expect((await cache.link(b!, false, cas, join(out, 'b2'))).fetched).toBe(true);
    expect(store.gets).toBe(gets + 1);
  });

  it('fetches a file larger than the whole budget straight to its destination', async () => {
    const { store, cas, cache, dir, out } = await setup(100);
    const digest = await putBlob(store, 'x'.repeat(101));
    expect(await cache.link(digest, true, cas, join(out, 'big'))).toEqual({ outcome: 'copied', fetched: true });
    expect(mode(join(out, 'big'))).toBe(0o555);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('makes empty files without reading the CAS', async () => {
    const { store, cas, cache, out } = await setup();
    const empty = { hash: EMPTY_SHA256, sizeBytes: 0 };
    expect(await cache.link(empty, false, cas, join(out, 'empty'))).toEqual({ outcome: 'copied', fetched: false });
    expect(statSync(join(out, 'empty')).size).toBe(0);
    expect(mode(join(out, 'empty'))).toBe(0o444);
    expect(store.gets).toBe(0);
  });

  it('answers missing and leaves nothing behind when the CAS lacks the file', async () => {
    const { cas, cache, dir, out } = await setup();
    expect(await cache.link(digestOf('absent'), false, cas, join(out, 'x'))).toEqual({
      outcome: 'missing',
      fetched: true,
    });
    expect(existsSync(join(out, 'x')), join(out, 'x')).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('caches nothing from a failed fetch and tries again next time', async () => {
    const raw = new MemoryStore({ maxBytes: 1 << 20 });
    const store = countingStore(verifying(raw));
    const cas = storeCas(store, '');
    const dir = freshDir();
    const out = freshDir();
    const cache = await FileCache.open({ dir, maxBytes: 1 << 20 });
    const digest = digestOf('good bytes');
    await raw.put(
      { instance: '', kind: 'cas', hash: digest.hash },
      streamOf(new TextEncoder().encode('evil bytes')),
      10,
    );
    await expect(cache.link(digest, false, cas, join(out, 'x'))).rejects.toMatchObject({ code: 'digest_mismatch' });
    expect(readdirSync(dir)).toEqual([]);
    expect(cache.count).toBe(0);
    await raw.put(
      { instance: '', kind: 'cas', hash: digest.hash },
      streamOf(new TextEncoder().encode('good bytes')),
      10,
    );
    expect((await cache.link(digest, false, cas, join(out, 'x'))).outcome).toBe('linked');
    expect(store.gets).toBe(2);
  });

  it('re-indexes its folder at open and deletes unfinished fetches and damaged entries', async () => {
    const { store, cas, cache, dir, out } = await setup();
    const kept = await putBlob(store, 'kept across restarts');
    await cache.link(kept, true, cas, join(out, 'first'));
    writeFileSync(join(dir, 'tmp-3f1c2a'), 'half a fetch');
    const damaged = digestOf('truncated');
    writeFileSync(join(dir, `${damaged.hash}-${damaged.sizeBytes}`), 'trunc');
    writeFileSync(join(dir, 'notes.txt'), 'not ours');

    const reopened = await FileCache.open({ dir, maxBytes: 1 << 20 });
    expect(readdirSync(dir).sort()).toEqual([`${kept.hash}-${kept.sizeBytes}-x`, 'notes.txt']);
    expect(reopened.count).toBe(1);
    expect(reopened.bytes).toBe(kept.sizeBytes);
    expect(await reopened.link(kept, true, cas, join(out, 'second'))).toEqual({ outcome: 'linked', fetched: false });
    expect(store.gets).toBe(1);
  });

  it('applies its budget to what it finds at open', async () => {
    const { store, cas, cache, dir, out } = await setup();
    const digests = await Promise.all(['p', 'q', 'r'].map((x) => putBlob(store, x.repeat(100))));
    for (const [i, digest] of digests.entries()) {
      await cache.link(digest, false, cas, join(out, `f${i}`));
      await new Promise((r) => setTimeout(r, 20)); // distinct ctimes: the link order is the use order
    }
    const reopened = await FileCache.open({ dir, maxBytes: 200 });
    expect(reopened.bytes).toBe(200);
    expect(existsSync(cache.pathOf(digests[0]!, false)), cache.pathOf(digests[0]!, false)).toBe(false); // the least recently linked went
  });

  it('copies a file whose cached inode has run out of links (EMLINK)', async (ctx) => {
    const { store, cas, cache, out } = await setup();
    const digest = await putBlob(store, 'linked by everyone');
    await cache.link(digest, false, cas, join(out, 'first'));
    // Fill the cached inode up to the file system's real link limit (65000 on ext4) with links of our own.
    const filler = join(freshDir(), 'filler');
    mkdirSync(filler);
    let full = false;
    for (let i = 0; i < 1_000_000 && !full; i++) {
      try {
        linkSync(cache.pathOf(digest, false), join(filler, String(i)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EMLINK') throw err;
        full = true;
      }
    }
    try {
      if (!full) ctx.skip('this file system has no per-inode link limit below a million links');
      const result = await cache.link(digest, false, cas, join(out, 'copy'));
      expect(result).toEqual({ outcome: 'copied', fetched: false });
      expect(statSync(join(out, 'copy')).ino).not.toBe(statSync(join(out, 'first')).ino);
      expect(readFileSync(join(out, 'copy'), 'utf8')).toBe('linked by everyone');
      expect(mode(join(out, 'copy'))).toBe(0o444);
    } finally {
      rmSync(filler, { recursive: true, force: true });
    }
  }, 120_000);

  it('keeps a shared fetch going while anyone waits, and cancels it when the last waiter gives up', async () => {
    const { store, cas, cache, dir, out } = await setup();
    const digest = await putBlob(store, randomBytes(10_000));
    const held = holdingCas(cas);
    const first = new AbortController();
    const second = new AbortController();
    const a = cache.link(digest, false, held.cas, join(out, 'a'), first.signal);
    await held.waiting;
    const b = cache.link(digest, false, held.cas, join(out, 'b'), second.signal);
    first.abort(new Error('a was cancelled'));
    await expect(a).rejects.toThrow('a was cancelled');
    expect(held.signals[0]!.aborted).toBe(false); // b still waits for it
    held.release();
    expect(await b).toEqual({ outcome: 'linked', fetched: false });
    expect(existsSync(join(out, 'a')), join(out, 'a')).toBe(false);

    // Alone, a waiter that gives up takes the fetch with it; the next caller starts afresh.
    const other = await putBlob(store, randomBytes(10_000));
    const again = holdingCas(cas);
    const c = new AbortController();
    const alone = cache.link(other, false, again.cas, join(out, 'c'), c.signal);
    await again.waiting;
    c.abort(new Error('c was cancelled'));
    await expect(alone).rejects.toThrow('c was cancelled');
    expect(again.signals[0]!.aborted).toBe(true);
    expect(readdirSync(dir).filter((name) => name.startsWith('tmp-'))).toEqual([]);
    expect(await cache.link(other, false, cas, join(out, 'd'))).toEqual({ outcome: 'linked', fetched: true });
  });
});
