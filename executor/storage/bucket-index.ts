/**
 * Turns --bucket-index into what openStore needs to put each S3 store of the graph behind a Redis index: one
 * connection per bucket, scoped by bucket and prefix, so two stores (or fleets) in one Redis never mix entries, and
 * a rebuilder that fills the index from a listing of the bucket whenever it is found lost (index-rebuilder.ts).
 */
import type { Logger } from '../../shared/log.ts';
import type { BucketIndexOptions } from '../../shared/storage/from-config.ts';
import type { BucketIndex } from '../../shared/storage/indexed.ts';
import type { BucketIndexConfig } from '../config/bucket-index-options.ts';
import type { QueueConfig } from '../config/queue-options.ts';
import { connectionOptions } from '../scheduler/redis/connection.ts';
import { IndexRebuilder } from './index-rebuilder.ts';
import { RedisBucketIndex } from './redis-bucket-index.ts';

export interface BucketIndexExtras {
  log?: Logger;
  /** How often each frontend looks whether the index was lost. Default a minute. */
  rebuildCheckMs?: number;
}

/** Undefined with --bucket-index off. */
export function bucketIndexOptions(
  config: BucketIndexConfig,
  queue: QueueConfig,
  extras: BucketIndexExtras = {},
): BucketIndexOptions | undefined {
  if (config.bucketIndex === 'off') return undefined;
  // The queue's Redis comes with its password file and CA; a URL of its own carries everything in itself.
  const connection =
    config.bucketIndex === 'queue'
      ? { url: queue.queue, passwordFile: queue.queuePasswordFile, caPath: queue.queueCaPath }
      : { url: config.bucketIndex };
  const ttlMs = config.bucketIndexTtlMs;
  return {
    ttlMs,
    open: async (bucket): Promise<BucketIndex> => {
      const index = await RedisBucketIndex.open({
        connection: await connectionOptions(connection),
        scope: `${bucket.bucket}/${bucket.prefix}`,
      });
      // A client of its own for listings, so a long rebuild never holds up the store's requests. Loaded here, as
      // openStore loads it: a frontend without an S3 store never pays for the AWS SDK.
      const { S3Store } = await import('../../shared/storage/s3.ts');
      const lister = new S3Store(bucket);
      const rebuilder = new IndexRebuilder({
        index,
        list: () => lister.listCas(),
        ttlMs,
        everyMs: extras.rebuildCheckMs ?? 60_000,
        log: extras.log,
      });
      return {
        lookup: (keys) => index.lookup(keys),
        record: (key, entry) => index.record(key, entry),
        forget: (key) => index.forget(key),
        close: async () => {
          await rebuilder.close();
          await Promise.all([lister.close(), index.close()]);
        },
      };
    },
  };
}
