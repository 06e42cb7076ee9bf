/**
 * The bucket index (shared/storage/indexed.ts): whether the S3 stores of --store answer FindMissingBlobs from a
 * Redis index of what the bucket holds instead of one HeadObject per digest, and how long its entries are believed.
 */
import { parseDuration } from '../../shared/duration.ts';
import { LarderError } from '../../shared/errors.ts';
import type { OptionRow } from '../../shared/options.ts';
import type { StoreConfig } from '../../shared/storage/config.ts';
import { isRedisUrl } from './queue-options.ts';

export interface BucketIndexConfig {
  /** 'off', 'queue' (the --queue Redis, with its password file and CA) or a redis:// URL of its own. */
  bucketIndex: string;
  /** How long after an object's last write its entry is believed: keep it below the bucket's lifecycle expiry. */
  bucketIndexTtlMs: number;
}

export const BUCKET_INDEX_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'bucket-index',
    env: 'LARDER_BUCKET_INDEX',
    help: 'off, queue (the --queue Redis) or redis://HOST:PORT: a shared index of what the s3:// store holds, for FindMissingBlobs',
    default: () => 'off',
  },
  {
    flag: 'bucket-index-ttl',
    env: 'LARDER_BUCKET_INDEX_TTL',
    help: "how long after a blob's last upload the bucket index vouches for it; keep it below the bucket's lifecycle expiry",
    default: () => '24h',
  },
];

export function parseBucketIndexOptions(values: Record<string, string>, store: StoreConfig): BucketIndexConfig {
  const bucketIndex = values['bucket-index']!.trim();
  if (bucketIndex !== 'off' && bucketIndex !== 'queue' && !isRedisUrl(bucketIndex))
    throw new LarderError('invalid_argument', '--bucket-index must be off, queue or a redis:// (rediss://) URL');
  if (bucketIndex === 'queue' && !isRedisUrl(values.queue!))
    throw new LarderError(
      'invalid_argument',
      '--bucket-index queue needs a Redis queue: give --queue redis://HOST:PORT',
    );
  if (bucketIndex !== 'off' && !hasBucket(store))
    throw new LarderError('invalid_argument', '--bucket-index indexes an S3 bucket: --store has no s3:// store');
  const bucketIndexTtlMs = parseDuration(values['bucket-index-ttl']!, '--bucket-index-ttl');
  if (bucketIndexTtlMs < 1000) throw new LarderError('invalid_argument', '--bucket-index-ttl must be at least 1s');
  return { bucketIndex, bucketIndexTtlMs };
}

function hasBucket(store: StoreConfig): boolean {
  return store.kind === 's3' || (store.kind === 'tiered' && store.tiers.some(hasBucket));
}
