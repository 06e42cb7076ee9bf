/**
 * ContentAddressableStorage: FindMissingBlobs, the two batch calls for small blobs, and GetTree. Keys
 * are the edge's (instance, cas, hash), so a blob PUT over HTTP is found here and the other way round.
 * A malformed request fails as a whole (INVALID_ARGUMENT); inside a well-formed batch each blob succeeds
 * or fails alone, with its own status.
 */
import { type BlobKey, type Digest, EMPTY_SHA256, blobKey, formatDigest, isEmptyDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { statMany } from '../../shared/storage/stat-many.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import {
  type BatchUpdateBlobsRequest_Request,
  Compressor_Value,
  type ContentAddressableStorage,
  type Digest as DigestMessage,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { checkDigestFunction, digestOf, instanceOf } from '../reapi/digests.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';
import { chosenDigests, digestColumns } from '../grpc/digest-columns.ts';
import { blobStatus } from '../reapi/grpc-status.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { Zstd } from '../reapi/zstd.ts';
import { readBatch } from './batch-read.ts';
import { TreeOrders } from './tree-orders.ts';
import { streamTree } from './tree.ts';

export interface CasDeps {
  store: BlobStore;
  zstd: Zstd | null;
  maxBatchBytes: number;
  maxBlobBytes: number;
}

/** Store calls in flight per request. */
const CONCURRENCY = 32;

export function casService(deps: CasDeps): ServiceHandlers<typeof ContentAddressableStorage> {
  const { store } = deps;
  const orders = new TreeOrders();

  return {
    async findMissingBlobs(request) {
      checkDigestFunction(request.digestFunction);
      const instance = instanceOf(request.instanceName);
      // One batch for the whole request: behind a bucket index that is one round trip, not one per digest.
      // This runs 10,000 times for one call: one pass, one key and one size per digest, and no Digest objects where
      // the decoder kept the digests as columns (its hashes are SHA-256 hashes, its sizes safe integers).
      const columns = digestColumns(request);
      const { hashes, sizes } = columns ?? checkedColumns(request.blobDigests);
      // Lists sized once, and indexes in typed arrays: what a call holds is what the collector copies if it runs
      // meanwhile (digest-lists.ts).
      const asked = new Uint32Array(hashes.length);
      const keys = new Array<BlobKey>(hashes.length);
      let count = 0;
      for (let i = 0; i < hashes.length; i++) {
        const hash = hashes[i]!;
        if (sizes[i] === 0 && hash === EMPTY_SHA256) continue; // always there
        asked[count] = i;
        // blobKey()'s checks were made already.
        keys[count++] = { instance, kind: 'cas', hash };
      }
      keys.length = count;
      const stored = await statMany(store, keys, CONCURRENCY);
      const missing = new Uint32Array(count);
      let missed = 0;
      for (let n = 0; n < count; n++) if (stored[n] !== sizes[asked[n]!]) missing[missed++] = asked[n]!;
      const indexes = missing.subarray(0, missed);
      // From columns, the missing digests' own bytes are the reply's (digest-columns.ts).
      if (columns !== undefined) return chosenDigests('missingBlobDigests', columns, indexes);
      return { missingBlobDigests: Array.from(indexes, (i) => request.blobDigests[i]!) };
    },

    async batchUpdateBlobs(request) {
      checkDigestFunction(request.digestFunction);
      const instance = instanceOf(request.instanceName);
      checkBatchSize(
        request.requests.reduce((sum, r) => sum + batchBytes(r), 0),
        deps.maxBatchBytes,
        'BatchUpdateBlobs carries',
      );
      const responses = await mapLimit(request.requests, CONCURRENCY, async (entry, i) => {
        try {
          await storeOne(instance, entry, i);
          return { digest: entry.digest, status: blobStatus() };
        } catch (err) {
          return { digest: entry.digest, status: blobStatus(err) };
        }
      });
      return { responses };
    },

    async batchReadBlobs(request) {
      checkDigestFunction(request.digestFunction);
      const instance = instanceOf(request.instanceName);
      // Digests the decoder kept as columns were checked on its bytes (SHA-256 hashes, safe sizes) already: their
      // blobs are read into the reply where it lies (batch-read.ts).
      const columns = digestColumns(request);
      if (columns !== undefined) {
        checkBatchSize(
          columns.sizes.reduce((sum, size) => sum + size, 0),
          deps.maxBatchBytes,
          'BatchReadBlobs asks for',
        );
        return readBatch(store, instance, columns, CONCURRENCY);
      }
      const digests = request.digests.map((d, i) => digestOf(d, `digests[${i}]`));
      checkBatchSize(
        digests.reduce((sum, d) => sum + d.sizeBytes, 0),
        deps.maxBatchBytes,
        'BatchReadBlobs asks for',
      );
      // Replies are uncompressed, which every client accepts; the batch limit keeps them small anyway.
      const ok = blobStatus(); // one for every blob found: the reply is only encoded, never changed
      const responses = await mapLimit(digests, CONCURRENCY, async (digest, i) => {
        const message: DigestMessage = request.digests[i]!;
        try {
          return {
            digest: message,
            data: await readOne(instance, digest),
            status: ok,
            compressor: Compressor_Value.IDENTITY,
          };
        } catch (err) {
          return { digest: message, status: blobStatus(err) };
        }
      });
      return { responses };
    },

    async getTree(request, ctx, send) {
      checkDigestFunction(request.digestFunction);
      await streamTree(
        { store, instance: instanceOf(request.instanceName), request, signal: ctx.signal, orders },
        send,
      );
    },
  };

  async function storeOne(instance: string, entry: BatchUpdateBlobsRequest_Request, index: number): Promise<void> {
    const digest = digestOf(entry.digest, `requests[${index}].digest`);
    if (digest.sizeBytes > deps.maxBlobBytes) {
      throw new LarderError(
        'too_large',
        `blob of ${digest.sizeBytes} bytes exceeds the ${deps.maxBlobBytes}-byte limit`,
      );
    }
    let data = entry.data;
    if (entry.compressor === Compressor_Value.ZSTD && deps.zstd !== null) {
      data = deps.zstd.decompress(data, digest.sizeBytes);
    } else if (entry.compressor !== Compressor_Value.IDENTITY) {
      const name = Compressor_Value[entry.compressor] ?? String(entry.compressor);
      throw new LarderError('invalid_argument', `compressor ${name} is not supported here (see GetCapabilities)`);
    }
    if (data.byteLength !== digest.sizeBytes) {
      throw new LarderError(
        'size_mismatch',
        `size mismatch: the digest says ${digest.sizeBytes} bytes, the data has ${data.byteLength}`,
      );
    }
    // The store's verifying wrapper checks the SHA-256 before anything is published.
    await store.put(blobKey(instance, 'cas', digest.hash), data, digest.sizeBytes);
  }

  async function readOne(instance: string, digest: Digest): Promise<Uint8Array> {
    if (isEmptyDigest(digest)) return new Uint8Array(0);
    // instanceOf() and digestOf() checked both already: blobKey() would check the hash again, a thousand per call.
    const blob = await store.get({ instance, kind: 'cas', hash: digest.hash });
    if (blob === null || blob.size !== digest.sizeBytes) {
      await blob?.body.cancel();
      throw new LarderError('not_found', `blob ${formatDigest(digest)} not found`);
    }
    return readWhole(blob, digest.sizeBytes);
  }
}

/** The hashes and sizes of digests the decoder did not keep as columns, each checked as digestOf() checks it. */
function checkedColumns(digests: readonly DigestMessage[]): { hashes: string[]; sizes: number[] } {
  const hashes: string[] = [];
  const sizes: number[] = [];
  for (let i = 0; i < digests.length; i++) {
    const digest = digestOf(digests[i]!, `blob_digests[${i}]`);
    hashes.push(digest.hash);
    sizes.push(digest.sizeBytes);
  }
  return { hashes, sizes };
}

/**
 * What one batch entry costs: its declared (uncompressed) size, which is what decompressing it holds in
 * memory, not its length on the wire; 32 KiB of zstd can declare, and expand to, 1 GiB.
 */
function batchBytes(entry: BatchUpdateBlobsRequest_Request): number {
  const declared = Number(entry.digest?.sizeBytes ?? 0n);
  return Math.max(entry.data.byteLength, Number.isFinite(declared) ? declared : 0);
}

function checkBatchSize(total: number, limit: number, what: string): void {
  if (total > limit) {
    throw new LarderError(
      'too_large',
      `${what} ${total} bytes, over the ${limit}-byte batch limit (GetCapabilities max_batch_total_size_bytes); use ByteStream`,
    );
  }
}
