/** Real stores and temp folders for the worker tests, plus a store wrapper that counts reads. */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import type { Digest } from '../../../shared/digest.ts';
import { MemoryStore } from '../../../shared/storage/memory.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { streamOf } from '../../../shared/storage/streams.ts';
import { verifying } from '../../../shared/storage/verifying.ts';

export function digestOf(data: Uint8Array | string): Digest {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  return { hash: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.byteLength };
}

/** A real store that counts `get` calls, to see how often the CAS is read. */
export function countingStore(inner: BlobStore): BlobStore & { gets: number } {
  const counting = {
    gets: 0,
    get: (key: Parameters<BlobStore['get']>[0]) => {
      counting.gets++;
      return inner.get(key);
    },
    stat: inner.stat.bind(inner),
    put: inner.put.bind(inner),
  };
  return counting;
}

export function memoryStore(): BlobStore & { gets: number } {
  return countingStore(verifying(new MemoryStore({ maxBytes: 64 * 1024 * 1024 })));
}

/** Stores `data` in the default instance and returns its digest. */
export async function putBlob(store: BlobStore, data: Uint8Array | string): Promise<Digest> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = digestOf(bytes);
  await store.put({ instance: '', kind: 'cas', hash: digest.hash }, streamOf(bytes), bytes.byteLength);
  return digest;
}

/** A fresh temp folder, removed after the file's tests. */
export function tempDirs(): () => string {
  const made: string[] = [];
  afterAll(() => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'larder-worker-'));
    made.push(dir);
    return dir;
  };
}
