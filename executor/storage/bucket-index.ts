/**
 * Turns --bucket-index into what openStore needs to put each S3 store of the graph behind a Redis index: one
 * connection per bucket, scoped by bucket and prefix, so two stores (or fleets) in one Redis never mix entries.
 */
import type { BucketIndexOptions } from '../../shared/storage/from-config.ts';
import type { BucketIndexConfig } from '../config/bucket-index-options.ts';
import type { QueueConfig } from '../config/queue-options.ts';
import { connectionOptions } from '../scheduler/redis/connection.ts';
import { RedisBucketIndex } from './redis-bucket-index.ts';

/** Undefined with --bucket-index off. */
export function bucketIndexOptions(config: BucketIndexConfig, queue: QueueConfig): BucketIndexOptions | undefined {
  if (config.bucketIndex === 'off') return undefined;
  // The queue's Redis comes with its password file and CA; a URL of its own carries everything in itself.
  const connection =
    config.bucketIndex === 'queue'
      ? { url: queue.queue, passwordFile: queue.queuePasswordFile, caPath: queue.queueCaPath }
      : { url: config.bucketIndex };
  return {
    ttlMs: config.bucketIndexTtlMs,
    open: async (bucket) =>
      RedisBucketIndex.open({
        connection: await connectionOptions(connection),
        scope: `${bucket.bucket}/${bucket.prefix}`,
      }),
  };
}
