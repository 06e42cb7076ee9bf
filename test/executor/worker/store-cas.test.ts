import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EMPTY_SHA256 } from '../../../shared/digest.ts';
import { DiskStore } from '../../../shared/storage/disk.ts';
import { MemoryStore } from '../../../shared/storage/memory.ts';
import { collect, streamOf } from '../../../shared/storage/streams.ts';
import { verifying } from '../../../shared/storage/verifying.ts';
import { storeCas } from '../../../executor/worker/store-cas.ts';
import { digestOf, memoryStore, putBlob, tempDirs } from './helpers.ts';
import { bytesOf } from '../../helpers/bytes.ts';

const freshDir = tempDirs();
const empty = { hash: EMPTY_SHA256, sizeBytes: 0 };

/** Opens `path`, hands the handle to `use`, and closes it: uploadFile takes an open file. */
async function withFile<T>(path: string, use: (file: FileHandle) => Promise<T>): Promise<T> {
  const file = await open(path, 'r');
  try {
    return await use(file);
  } finally {
    await file.close();
  }
}

describe('storeCas', () => {
  it('reads whole blobs, answers null on a miss and refuses blobs over the limit', async () => {
    const store = memoryStore();
    const cas = storeCas(store, '');
    const digest = await putBlob(store, 'directory bytes');
    expect(new TextDecoder().decode((await cas.readBytes(digest, 1024))!)).toBe('directory bytes');
    expect(await cas.readBytes(digestOf('absent'), 1024)).toBeNull();
    await expect(cas.readBytes(digest, 4)).rejects.toMatchObject({ code: 'too_large' });
  });

  it('always has the empty blob, even in an empty store', async () => {
    const cas = storeCas(memoryStore(), '');
    expect(await cas.readBytes(empty, 10)).toEqual(new Uint8Array(0));
    expect(await cas.findMissing([empty])).toEqual([]);
    const path = join(freshDir(), 'empty');
    expect(await cas.readToFile(empty, path)).toBe(true);
    expect(statSync(path).size).toBe(0);
  });

  it('keeps instances apart', async () => {
    const store = memoryStore();
    const digest = await putBlob(store, 'default instance only');
    expect(await storeCas(store, 'other').readBytes(digest, 1024)).toBeNull();
    expect(await storeCas(store, 'other').findMissing([digest])).toEqual([digest]);
    expect(() => storeCas(store, '../escape')).toThrow(/invalid instance/);
  });

  it('streams a blob into a new private file', async () => {
    const store = verifying(await DiskStore.open({ path: freshDir(), maxBytes: 1 << 24 }));
    const data = randomBytes(300_000); // streamed from disk, not read whole
    const digest = await putBlob(store, data);
    const path = join(freshDir(), 'input');
    expect(await storeCas(store, '').readToFile(digest, path)).toBe(true);
    expect(bytesOf(readFileSync(path))).toEqual(bytesOf(data));
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('leaves nothing behind for a missing blob', async () => {
    const path = join(freshDir(), 'input');
    expect(await storeCas(memoryStore(), '').readToFile(digestOf('absent'), path)).toBe(false);
    expect(existsSync(path), path).toBe(false);
  });

  it('never overwrites an existing file', async () => {
    const store = memoryStore();
    const digest = await putBlob(store, 'new content');
    const path = join(freshDir(), 'taken');
    writeFileSync(path, 'old content');
    await expect(storeCas(store, '').readToFile(digest, path)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(path, 'utf8')).toBe('old content');
  });

  it('refuses stored bytes that do not hash to their digest, and removes the partial file', async () => {
    // Stores do not check hashes on their own: writing past verifying() stands in for a corrupt disk.
    const raw = new MemoryStore({ maxBytes: 1 << 20 });
    const digest = digestOf('the real bytes');
    const wrong = new TextEncoder().encode('the fake bytes'); // same length
    await raw.put({ instance: '', kind: 'cas', hash: digest.hash }, streamOf(wrong), wrong.byteLength);
    const cas = storeCas(verifying(raw), '');
    const path = join(freshDir(), 'input');
    await expect(cas.readToFile(digest, path)).rejects.toMatchObject({ code: 'digest_mismatch' });
    expect(existsSync(path), path).toBe(false);
    await expect(cas.readBytes(digest, 1024)).rejects.toMatchObject({ code: 'digest_mismatch' });
  });

  it('treats a stored blob of the wrong size as missing', async () => {
    const raw = new MemoryStore({ maxBytes: 1 << 20 });
    const digest = digestOf('twelve bytes');
    await raw.put({ instance: '', kind: 'cas', hash: digest.hash }, streamOf(new Uint8Array(5)), 5);
    const path = join(freshDir(), 'input');
    expect(await storeCas(raw, '').readToFile(digest, path)).toBe(false);
    expect(existsSync(path), path).toBe(false);
  });

  it('finds exactly the missing digests', async () => {
    const store = memoryStore();
    const present = await putBlob(store, 'here');
    const absent = digestOf('not here');
    expect(await storeCas(store, '').findMissing([present, absent, empty])).toEqual([absent]);
  });

  it('uploads files and bytes, skipping blobs already stored', async () => {
    const inner = new MemoryStore({ maxBytes: 1 << 24 });
    let puts = 0;
    const store = verifying({
      get: (k) => inner.get(k),
      stat: (k) => inner.stat(k),
      put: (k, b, s) => {
        puts++;
        return inner.put(k, b, s);
      },
    });
    const cas = storeCas(store, '');
    const data = randomBytes(200_000);
    const path = join(freshDir(), 'output');
    writeFileSync(path, data);
    const digest = digestOf(data);
    await withFile(path, (file) => cas.uploadFile(digest, file));
    const stored = await inner.get({ instance: '', kind: 'cas', hash: digest.hash });
    expect(bytesOf(await collect(stored!.body, 1 << 20))).toEqual(bytesOf(data));
    await withFile(path, (file) => cas.uploadFile(digest, file));
    expect(puts).toBe(1);

    const small = digestOf('small output');
    await cas.uploadBytes(small, new TextEncoder().encode('small output'));
    await cas.uploadBytes(small, new TextEncoder().encode('small output'));
    await cas.uploadBytes(empty, new Uint8Array(0));
    expect(puts).toBe(2);
    expect(await inner.stat({ instance: '', kind: 'cas', hash: small.hash })).toBe(12);
  });

  it('refuses an upload whose file does not match its digest', async () => {
    const inner = new MemoryStore({ maxBytes: 1 << 20 });
    const path = join(freshDir(), 'output');
    writeFileSync(path, 'changed after it was hashed');
    const claimed = digestOf('what was hashed first');
    await expect(
      withFile(path, (file) => storeCas(verifying(inner), '').uploadFile(claimed, file)),
    ).rejects.toMatchObject({
      code: 'size_mismatch',
    });
    writeFileSync(path, 'what was hashed firsT');
    await expect(
      withFile(path, (file) => storeCas(verifying(inner), '').uploadFile(claimed, file)),
    ).rejects.toMatchObject({
      code: 'digest_mismatch',
    });
    expect(inner.bytes).toBe(0);
  });
});
