/**
 * Remote Asset API Fetch.FetchBlob: the digest of the content a URI names, from the cache when it has been
 * fetched (or pushed) before, else downloaded from the first URI that works, checked against `checksum.sri`,
 * and stored in the CAS. FetchDirectory answers only with trees pushed before (PushDirectory) and still
 * complete in the CAS; it downloads nothing (no archive is unpacked into a tree).
 *
 * Every failure fails the call, with a status saying why (NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION for
 * a checksum mismatch or an over-size blob, DEADLINE_EXCEEDED, UNAVAILABLE), although the API would put failures
 * of the origin in the response's `status`: Bazel 4.2.3 never reads that field. Handed an OK call without a
 * digest it downloads the empty blob, and an `http_file` without a sha256 then builds with an empty file.
 * Codes Bazel retries on its own (ABORTED, RESOURCE_EXHAUSTED) are avoided where a retry cannot help.
 *
 * Answered from the cache, a FetchBlob costs about what a FindMissingBlobs of its digest does (bench/asset.ts): a
 * request seen lately is not parsed again (request-memo.ts), and gets the reply it got last time, encoded once
 * (reused-replies.ts), as long as its record still names the same blob; the blob's presence is asked every time.
 */
import { durationMs } from '@bufbuild/protobuf/wkt';
import { blobKey, type Digest } from '../../shared/digest.ts';
import { errorForLog, isLarderError, LarderError } from '../../shared/errors.ts';
import type { FetchConfig } from '../../shared/fetch-config.ts';
import type { LogFields, Logger } from '../../shared/log.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import type { Fetch, FetchBlobResponse } from '../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import { DigestFunction_Value } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { digestMessage } from '../reapi/digests.ts';
import { Code, RpcError } from '../reapi/grpc-status.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';
import { reusedReply } from '../grpc/reused-replies.ts';
import { firstMissing } from './asset/directory-tree.ts';
import { casSize, type RecordRef, readRecord, recordRef, writeRecord } from './asset/records.ts';
import { type AssetRequest, instantOf, parseAssetRequest } from './asset/request.ts';
import { RequestMemo, type RequestContent } from './asset/request-memo.ts';
import { fetchMetrics } from './asset/metrics.ts';
import { SharedDownloads } from './asset/shared-downloads.ts';
import { Slots } from './asset/slots.ts';
import { storeDownload } from './asset/store-download.ts';
import { download } from './asset/upstream.ts';

export interface FetchDeps {
  store: BlobStore;
  log: Logger;
  maxBlobBytes: number;
  fetch: FetchConfig;
  /** Where FetchBlob counts how it answered; nothing is counted when absent. */
  metrics?: Metrics;
  /** The clock records are dated and aged by (ms since the epoch). */
  now?: () => number;
}

interface Fetched {
  uri: string;
  digest: Digest;
  outcome: 'origin' | 'joined';
}

type Answer = Omit<FetchBlobResponse, '$typeName' | 'status' | 'blobDigest'> & {
  status?: { code: number; message: string };
  blobDigest?: ReturnType<typeof digestMessage>;
};

/**
 * What FetchBlob works out from a request, once per distinct request (request-memo.ts): the request parsed, the
 * records that may answer it, the fields of its log line, and the reply it last got from the cache.
 */
interface KnownRequest {
  asset: AssetRequest;
  /** One record per URI, in the request's order. */
  byUri: RecordRef[];
  /** The record of the checksum.sri, if the request has one. */
  byChecksum: RecordRef | null;
  logFields: LogFields;
  /** Handed out again (encoded once, see reused-replies.ts) while the cache gives the same answer. */
  lastReply: { uri: string; digest: Digest; reply: Answer } | null;
}

function knowRequest(request: RequestContent): KnownRequest {
  const asset = parseAssetRequest(request);
  const { instance, qualifiers } = asset;
  return {
    asset,
    byUri: asset.uris.map((uri) => recordRef(instance, { uri, identity: qualifiers.identity })),
    byChecksum: qualifiers.checksum === null ? null : recordRef(instance, { checksum: qualifiers.checksum }),
    logFields: {
      uris: asset.uris.map(withoutQuery).join(' '),
      qualifiers: request.qualifiers.map((q) => q.name).join(' '),
    },
    lastReply: null,
  };
}

export function fetchService(deps: FetchDeps): ServiceHandlers<typeof Fetch> {
  const { store, log } = deps;
  const now = deps.now ?? Date.now;
  const downloads = new Slots(deps.fetch.concurrency);
  const inFlight = new SharedDownloads<{ uri: string; digest: Digest }>();
  const counts = fetchMetrics(deps.metrics, inFlight);
  const requests = new RequestMemo(knowRequest);

  /**
   * The content downloaded for `asset`: by joining the same download in flight ('joined'), or by starting it
   * once a download slot is free ('origin').
   */
  async function fetchOnce(known: KnownRequest, waiting: AbortSignal, timeoutMs: number): Promise<Fetched> {
    const { asset } = known;
    const key = flightKey(asset);
    const joined = joinFlight(key, asset, waiting);
    if (joined !== null) return joined;
    const release = await downloads.acquire(waiting).catch((err: unknown) => {
      if (isLarderError(err, 'timeout'))
        throw new RpcError(Code.DEADLINE_EXCEEDED, `no download slot within ${timeoutMs} ms`);
      throw err;
    });
    // Another call may have started the same download while this one waited for its slot.
    const started = joinFlight(key, asset, waiting);
    if (started !== null) {
      release();
      return started;
    }
    const fetched = await inFlight.start(key, waiting, (signal) => downloadFirst(known, signal).finally(release));
    return { ...fetched, outcome: 'origin' };
  }

  function joinFlight(key: string, asset: AssetRequest, waiting: AbortSignal): Promise<Fetched> | null {
    const flight = inFlight.join(key, waiting);
    if (flight === null) return null;
    log.debug('FetchBlob joins a download in flight', { uris: asset.uris.map(withoutQuery).join(' ') });
    return flight.then((fetched) => ({ ...fetched, outcome: 'joined' }));
  }

  /** Downloads from the first URI that works and records the content under every URI (and its checksum). */
  async function downloadFirst({ asset, byUri, byChecksum }: KnownRequest, signal: AbortSignal) {
    const since = now();
    const failures: LarderError[] = [];
    const fetched = await fetchFirst(deps, asset, signal, failures);
    if (fetched === null) {
      const last = failures.at(-1) ?? new LarderError('timeout', 'the fetch was abandoned by every caller');
      log.info('FetchBlob failed', { uris: asset.uris.map(withoutQuery).join(' '), error: errorForLog(last) });
      throw new RpcError(statusCode(last), failures.map((f) => f.message).join('; ') || last.message);
    }
    const record = { digest: fetched.digest, since, expireAt: null };
    for (const ref of byUri) await writeRecord(store, ref, record);
    if (byChecksum !== null) await writeRecord(store, byChecksum, record);
    log.info('FetchBlob stored', {
      uri: withoutQuery(fetched.uri),
      hash: fetched.digest.hash,
      size: fetched.digest.sizeBytes,
    });
    return fetched;
  }

  return {
    async fetchBlob(request, ctx) {
      const known = requests.get(request);
      log.debug('FetchBlob', known.logFields);
      const cached = await lookUp(store, known, { now: now(), oldest: instantOf(request.oldestContentAccepted) });
      if (cached !== null) {
        counts.answered('cache');
        return cachedReply(known, cached.uri, cached.digest);
      }

      const timeoutMs = Math.min(
        deps.fetch.timeoutMs,
        request.timeout === undefined || durationMs(request.timeout) <= 0 ? Infinity : durationMs(request.timeout),
      );
      const waiting = AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]);
      try {
        const fetched = await fetchOnce(known, waiting, timeoutMs);
        counts.answered(fetched.outcome);
        return answer(fetched.uri, fetched.digest);
      } catch (err) {
        counts.answered('failed');
        if (ctx.signal.aborted || !waiting.aborted || err instanceof RpcError) throw err;
        throw new RpcError(Code.DEADLINE_EXCEEDED, `the fetch did not finish within ${timeoutMs} ms`);
      }
    },

    async fetchDirectory(request) {
      const asset = parseAssetRequest(request);
      const when = { now: now(), oldest: instantOf(request.oldestContentAccepted) };
      for (const uri of asset.uris) {
        const ref = recordRef(asset.instance, { uri, identity: asset.qualifiers.identity }, 'directory');
        const record = await readRecord(store, ref, when);
        if (record === null || (await firstMissing(store, asset.instance, record.digest)) !== null) continue;
        return {
          uri,
          status: { code: Code.OK, message: '' },
          rootDirectoryDigest: digestMessage(record.digest),
          digestFunction: DigestFunction_Value.SHA256,
        };
      }
      throw new RpcError(
        Code.NOT_FOUND,
        `no complete directory was pushed for ${asset.uris.map(withoutQuery).join(', ')} (FetchDirectory downloads nothing)`,
      );
    },
  };
}

/** The reply to a request answered from the cache: the one it got last time when the answer is the same. */
function cachedReply(known: KnownRequest, uri: string, digest: Digest): Answer {
  const last = known.lastReply;
  if (
    last !== null &&
    last.uri === uri &&
    last.digest.hash === digest.hash &&
    last.digest.sizeBytes === digest.sizeBytes
  )
    return last.reply;
  const reply = reusedReply(answer(uri, digest));
  known.lastReply = { uri, digest, reply };
  return reply;
}

function answer(uri: string, digest: Digest): Answer {
  return {
    status: { code: Code.OK, message: '' },
    uri,
    qualifiers: [],
    blobDigest: digestMessage(digest),
    digestFunction: DigestFunction_Value.SHA256,
  };
}

/** Tries the URIs in order; the first that downloads (and matches the checksum) is stored. Failures are collected. */
async function fetchFirst(
  deps: FetchDeps,
  asset: AssetRequest,
  signal: AbortSignal,
  failures: LarderError[],
): Promise<{ uri: string; digest: Digest } | null> {
  for (const [index, uri] of asset.uris.entries()) {
    if (signal.aborted) break;
    if (uri.toLowerCase().startsWith('urn:')) {
      failures.push(new LarderError('not_found', `${uri} was never pushed to this server`));
      continue;
    }
    try {
      return { uri, digest: await downloadAndStore(deps, asset, index, signal) };
    } catch (err) {
      if (!isLarderError(err)) throw err;
      failures.push(err);
    }
  }
  return null;
}

/** A record for any of the URIs, else one for the checksum; a sha256 checksum is a CAS key by itself. */
async function lookUp(
  store: BlobStore,
  { asset, byUri, byChecksum }: KnownRequest,
  when: { now: number; oldest: number | null },
): Promise<{ uri: string; digest: Digest } | null> {
  for (const [index, ref] of byUri.entries()) {
    const record = await readRecord(store, ref, when);
    if (record !== null) return { uri: asset.uris[index]!, digest: record.digest };
  }
  const checksum = asset.qualifiers.checksum;
  if (checksum === null || byChecksum === null) return null;
  const record = await readRecord(store, byChecksum, when);
  if (record !== null) return { uri: asset.uris[0]!, digest: record.digest };
  // Content is what its SHA-256 says, however old: only a client that asks for fresh content misses here.
  if (checksum.algorithm === 'sha256' && when.oldest === null) {
    const size = await casSize(store, blobKey(asset.instance, 'cas', checksum.hex));
    if (size !== null) return { uri: asset.uris[0]!, digest: { hash: checksum.hex, sizeBytes: size } };
  }
  return null;
}

async function downloadAndStore(deps: FetchDeps, asset: AssetRequest, index: number, signal: AbortSignal) {
  const headers = new Map([...asset.qualifiers.headers, ...(asset.qualifiers.headersPerUri.get(index) ?? [])]);
  const limits = { ...deps.fetch, maxBytes: deps.maxBlobBytes };
  if (deps.fetch.allow.length === 0)
    throw new LarderError('permission_denied', 'this server downloads nothing: its --fetch-allow list is empty');
  const spooled = await download(asset.uris[index]!, { headers, checksum: asset.qualifiers.checksum, limits, signal });
  try {
    return await storeDownload(deps.store, asset.instance, spooled);
  } finally {
    await spooled.discard();
  }
}

/**
 * What makes two calls the same download: the instance, the URIs in order and the qualifiers that identify
 * content (what a cache record is keyed by). Headers are not part of it, as they are not of a record.
 */
function flightKey(asset: AssetRequest): string {
  return JSON.stringify([asset.instance, asset.uris, asset.qualifiers.identity]);
}

/** The status of a fetch that failed: the last URI's failure decides. */
function statusCode(err: LarderError): Code {
  switch (err.code) {
    case 'not_found':
      return Code.NOT_FOUND;
    case 'permission_denied':
      return Code.PERMISSION_DENIED;
    // Another try would download the same bytes again: not ABORTED or RESOURCE_EXHAUSTED, which Bazel retries.
    case 'digest_mismatch':
    case 'too_large':
      return Code.FAILED_PRECONDITION;
    case 'timeout':
      return Code.DEADLINE_EXCEEDED;
    case 'no_space':
      return Code.RESOURCE_EXHAUSTED;
    default:
      return Code.UNAVAILABLE;
  }
}

/** A URI for the log: a query string may carry a token. */
function withoutQuery(uri: string): string {
  return uri.replace(/[?#].*$/, '');
}
