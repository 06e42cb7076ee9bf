/**
 * Use this around each store of the graph (from-config.ts does, for every leaf) to time its operations: `get`
 * until the blob is open (its bytes stream afterwards, at the client's pace), `stat`, and `put` until the blob
 * is published. It changes nothing about what the store answers.
 */
import type { BlobFile, BlobStore } from './store.ts';

export type MeasuredResult = 'hit' | 'miss' | 'ok' | 'error';
export type Observe = (operation: 'get' | 'stat' | 'put', result: MeasuredResult, seconds: number) => void;

export function measured(inner: BlobStore, observe: Observe): BlobStore {
  const timed = async <T>(
    operation: 'get' | 'stat' | 'put',
    run: () => Promise<T>,
    result: (value: T) => MeasuredResult,
  ): Promise<T> => {
    const start = performance.now();
    try {
      const value = await run();
      observe(operation, result(value), (performance.now() - start) / 1000);
      return value;
    } catch (err) {
      observe(operation, 'error', (performance.now() - start) / 1000);
      throw err;
    }
  };
  const found = (value: unknown): MeasuredResult => (value === null ? 'miss' : 'hit');
  return {
    get: (key) => timed('get', () => inner.get(key), found),
    // A located blob counts as a get's hit (it answers the same download); a null is no answer yet, and the get
    // the caller then makes is what gets counted.
    locate:
      inner.locate === undefined
        ? undefined
        : (key) => {
            const start = performance.now();
            let file: BlobFile | null;
            try {
              file = inner.locate!(key);
            } catch (err) {
              observe('get', 'error', (performance.now() - start) / 1000);
              throw err;
            }
            if (file !== null) observe('get', 'hit', (performance.now() - start) / 1000);
            return file;
          },
    // Likewise, a blob read into the caller's memory is a get's hit, and one not read is counted by the get that follows.
    readSmallInto:
      inner.readSmallInto === undefined
        ? undefined
        : (key, into, at, size) => {
            const start = performance.now();
            let read: boolean;
            try {
              read = inner.readSmallInto!(key, into, at, size);
            } catch (err) {
              observe('get', 'error', (performance.now() - start) / 1000);
              throw err;
            }
            if (read) observe('get', 'hit', (performance.now() - start) / 1000);
            return read;
          },
    stat: (key) => timed('stat', () => inner.stat(key), found),
    put: (key, body, size) =>
      timed(
        'put',
        () => inner.put(key, body, size),
        () => 'ok',
      ),
    // Each of statMany's answers is not a round trip of its own: timing the batch as one stat would skew stat's figures.
    statMany: inner.statMany === undefined ? undefined : (keys) => inner.statMany!(keys),
    statWritten:
      inner.statWritten === undefined ? undefined : (key) => timed('stat', () => inner.statWritten!(key), found),
    adopt: inner.adopt === undefined ? undefined : (key, path, size, sha256) => inner.adopt!(key, path, size, sha256),
    evictForFullDisk: inner.evictForFullDisk === undefined ? undefined : (bytes) => inner.evictForFullDisk!(bytes),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
