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
import type { WorkerCas } from '../../../executor/worker/cas.ts';

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

/**
 * A real CAS whose file reads (readToFile) hold until `release()`, as a slow network would, while honouring the
 * signal they are given: `waiting` resolves once a read is held, and `signals` lists what each read was given.
 */
export function holdingCas(inner: WorkerCas): {
  cas: WorkerCas;
  waiting: Promise<void>;
  signals: Array<AbortSignal | undefined>;
  release(): void;
} {
  let held!: () => void;
  const waiting = new Promise<void>((resolve) => (held = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const signals: Array<AbortSignal | undefined> = [];
  const cas: WorkerCas = {
    ...inner,
    maxBatchBytes: inner.maxBatchBytes,
    async readToFile(digest, path, signal) {
      signals.push(signal);
      held();
      await new Promise<void>((resolve, reject) => {
        void released.then(resolve);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
      return inner.readToFile(digest, path, signal);
    },
  };
  return { cas, waiting, signals, release };
}
