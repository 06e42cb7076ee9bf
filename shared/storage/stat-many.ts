/**
 * Sizes of many blobs from any store: its own statMany when it has one (one round trip for all, see store.ts),
 * else stat for each with at most `concurrency` in flight. Null is "not known to be stored".
 */
import type { BlobKey } from '../digest.ts';
import { mapLimit } from '../map-limit.ts';
import type { BlobStore } from './store.ts';

export function statMany(
  store: BlobStore,
  keys: readonly BlobKey[],
  concurrency: number,
): Promise<Array<number | null>> {
  if (store.statMany !== undefined) return store.statMany(keys);
  return mapLimit(keys, concurrency, (key) => store.stat(key));
}
