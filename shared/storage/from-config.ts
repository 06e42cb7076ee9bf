/**
 * The one place that turns a StoreConfig tree into live stores. Every upload path gets verification here, and
 * with metrics every leaf store is timed and, when it has a budget, watched (usage, budget, evictions), so no
 * backend has to remember to. With a bucket index, each S3 store is put behind it here too.
 */
import { DiskStore } from './disk.ts';
import { MemoryStore } from './memory.ts';
import type { Logger } from '../log.ts';
import type { Metrics, StoreLabels } from '../metrics/metrics.ts';
import type { StoreConfig } from './config.ts';
import { type BucketIndex, type DatedStore, IndexedStore } from './indexed.ts';
import type { S3Config } from './s3-config.ts';
import { measured } from './measured.ts';
import type { BlobStore } from './store.ts';
import { TieredStore } from './tiered.ts';
import { verifying } from './verifying.ts';

export interface OpenStoreOptions {
  /** Where stores report what they carry on without (a failing front tier); silent when absent. */
  log?: Logger;
  /** Where stores are timed and their usage reported; nothing is measured when absent. */
  metrics?: Metrics;
  /**
   * A shared index in front of every s3:// store of the graph (indexed.ts), so FindMissingBlobs need not ask the
   * bucket per digest; none when absent. The executor makes it from --bucket-index (executor/storage/).
   */
  bucketIndex?: BucketIndexOptions;
}

export interface BucketIndexOptions {
  /** Opens the index of one bucket (the store owns it from then on). */
  open(bucket: S3Config): Promise<BucketIndex>;
  /** How long after an object's last write its entry is believed (below the bucket's lifecycle expiry). */
  ttlMs: number;
}

/** Builds the store graph and wraps it so every upload is checked once, at the top. */
export async function openStore(config: StoreConfig, options: OpenStoreOptions = {}): Promise<BlobStore> {
  return verifying(await openNode(config, options, 0));
}

/** `tier` is the node's position in the flattened tiered(…) list: 0 is the front (or the only store). */
async function openNode(config: StoreConfig, options: OpenStoreOptions, tier: number): Promise<BlobStore> {
  if (config.kind === 'tiered') {
    // tiered(a, b, c) is a in front of tiered(b, c): each level is one front and one back.
    const [front, ...rest] = config.tiers;
    const back = rest.length === 1 ? rest[0]! : { kind: 'tiered' as const, tiers: rest };
    return new TieredStore({
      front: await openNode(front!, options, tier),
      back: await openNode(back, options, tier + 1),
      log: options.log,
    });
  }
  const { metrics } = options;
  const labels: StoreLabels = { store: config.kind, tier: String(tier) };
  const onEvicted = metrics === undefined ? undefined : (blobs: number) => metrics.evicted(labels, blobs);
  let store: BlobStore;
  switch (config.kind) {
    case 'memory': {
      const memory = new MemoryStore({ maxBytes: config.maxBytes, onEvicted });
      metrics?.watchStore(labels, { bytes: () => memory.bytes, budget: config.maxBytes });
      store = memory;
      break;
    }
    case 'disk': {
      const disk = await DiskStore.open({ path: config.path, maxBytes: config.maxBytes, log: options.log, onEvicted });
      metrics?.watchStore(labels, { bytes: () => disk.bytes, budget: config.maxBytes });
      store = disk;
      break;
    }
    case 's3': {
      // Loaded only when used: the AWS SDK adds ~120 ms and ~15 MiB to start-up, which memory and disk edges need not pay.
      const { S3Store } = await import('./s3.ts');
      const observer =
        metrics === undefined
          ? undefined
          : { attempts: metrics.s3Attempts.bind(metrics), failed: metrics.s3Failed.bind(metrics) };
      store = new S3Store({ ...config, observer });
      break;
    }
  }
  if (metrics !== undefined) store = measured(store, metrics.storeObserver(labels));
  const { bucketIndex } = options;
  if (config.kind !== 's3' || bucketIndex === undefined) return store;
  const index = await bucketIndex.open(config).catch(async (err: unknown) => {
    await store.close?.();
    throw err;
  });
  return new IndexedStore({ bucket: store as DatedStore, index, ttlMs: bucketIndex.ttlMs, log: options.log });
}
