/**
 * The fleet's index of what a shared bucket holds (a BucketIndex, see shared/storage/indexed.ts), in the Redis the
 * fleet already runs. One string per blob, `{prefix}bucket-index:{scope}:{instance}/{kind}/{hash}` = `{size}:{until}`,
 * set to expire at `until` (PXAT), so Redis drops each entry when it may no longer be believed and the index never
 * grows past the blobs uploaded within one TTL. A marker key says the index was built (index-rebuilder.ts). Lookups go out as MGETs of LOOKUP_CHUNK keys, all pipelined: ten
 * thousand digests are one round trip.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { BlobKey } from '../../shared/digest.ts';
import type { BucketIndex, IndexEntry } from '../../shared/storage/indexed.ts';

export interface RedisBucketIndexOptions {
  /** Address, credentials and TLS (executor/scheduler/redis/connection.ts makes them from a URL). */
  connection: RedisOptions;
  /** Names the bucket and key prefix, so indexes of different buckets can share one Redis. */
  scope: string;
  /** Key prefix, as the queue's. Default `larder:`. */
  prefix?: string;
}

/** Keys per MGET: large enough that a FindMissingBlobs of 10,000 is a handful of commands, small enough not to stall Redis. */
const LOOKUP_CHUNK = 1_000;
/** The longest a command may take before its batch is answered without the index. */
const COMMAND_TIMEOUT_MS = 2_000;

export class RedisBucketIndex implements BucketIndex {
  readonly #redis: Redis;
  readonly #prefix: string;

  private constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  /** Connects and checks that Redis answers, so a wrong address fails at start rather than at the first lookup. */
  static async open(options: RedisBucketIndexOptions): Promise<RedisBucketIndex> {
    // A lookup that cannot be answered soon is better answered "missing" (indexed.ts) than late: while the
    // connection is down commands fail at once rather than queue, and a Redis that hangs is given up on.
    const redis = new Redis({
      ...options.connection,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: COMMAND_TIMEOUT_MS,
    });
    redis.on('error', () => {}); // failed commands reject; indexed.ts reports them
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    return new RedisBucketIndex(redis, `${options.prefix ?? 'larder:'}bucket-index:${options.scope}:`);
  }

  async lookup(keys: readonly BlobKey[]): Promise<Array<IndexEntry | null>> {
    const pipeline = this.#redis.pipeline();
    for (let start = 0; start < keys.length; start += LOOKUP_CHUNK) {
      pipeline.mget(keys.slice(start, start + LOOKUP_CHUNK).map((key) => this.#name(key)));
    }
    const replies = (await pipeline.exec()) ?? [];
    const values: Array<string | null> = [];
    for (const [err, chunk] of replies) {
      if (err !== null) throw err;
      values.push(...(chunk as Array<string | null>));
    }
    return values.map(parseEntry);
  }

  async record(key: BlobKey, entry: IndexEntry): Promise<void> {
    await this.#redis.set(this.#name(key), `${entry.size}:${entry.until}`, 'PXAT', Math.ceil(entry.until));
  }

  /** Records many entries in one round trip (a rebuild, a page of a bucket listing at a time). */
  async recordMany(entries: ReadonlyArray<{ key: BlobKey; entry: IndexEntry }>): Promise<void> {
    const pipeline = this.#redis.pipeline();
    for (const { key, entry } of entries)
      pipeline.set(this.#name(key), `${entry.size}:${entry.until}`, 'PXAT', Math.ceil(entry.until));
    for (const [err] of (await pipeline.exec()) ?? []) if (err !== null) throw err;
  }

  /**
   * Whether this process should rebuild the index now: true when the index was never built, or was lost or
   * flushed since (its marker is gone), and no other process claimed the rebuild within the last `claimMs`.
   */
  async claimRebuild(claimMs: number): Promise<boolean> {
    return (await this.#redis.set(this.#marker, 'rebuilding', 'PX', claimMs, 'NX')) === 'OK';
  }

  /** Marks the index built: no process rebuilds it again until the marker is lost with the entries. */
  async markBuilt(): Promise<void> {
    await this.#redis.set(this.#marker, 'built');
  }

  async forget(key: BlobKey): Promise<void> {
    await this.#redis.del(this.#name(key));
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }

  #name(key: BlobKey): string {
    return `${this.#prefix}${key.instance}/${key.kind}/${key.hash}`;
  }

  /** Beside the entries, so whatever loses them (FLUSHALL, a restart without persistence) loses it too. */
  get #marker(): string {
    return `${this.#prefix}#built`;
  }
}

/** `{size}:{until}`; anything else (a key someone else wrote) counts as no entry. */
function parseEntry(value: string | null): IndexEntry | null {
  const match = value === null ? null : /^(\d+):(\d+)$/.exec(value);
  return match === null ? null : { size: Number(match[1]), until: Number(match[2]) };
}
