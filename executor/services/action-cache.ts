/**
 * ActionCache: GetActionResult and UpdateActionResult over the same `ac` keys the edge uses, so an
 * entry written over HTTP is a hit here. Reads get the edge's validation (an entry whose outputs are
 * gone from the CAS is a miss) and may inline small stdout/stderr/output files when the client asks.
 */
import { decodeActionResult, MAX_BUFFERED_PROTO_BYTES, outputsPresent } from '../../shared/ac/validate.ts';
import { type BlobKey, blobKey, formatKey } from '../../shared/digest.ts';
import { isLarderError, LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import type {
  ActionCache,
  ActionResult,
  Digest as DigestMessage,
  GetActionResultRequest,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { checkDigestFunction, digestOf, instanceOf } from '../reapi/digests.ts';
import type { CallContext, ServiceHandlers } from '../grpc/adapt.ts';
import { type ActionCacheWrites, writeActionResult } from './action-cache-writes.ts';

/** Inlined bytes per reply, summed: far below message limits, and enough for typical stdout/stderr. */
export const MAX_INLINE_BYTES = 1024 * 1024;

export interface ActionCacheDeps {
  store: BlobStore;
  log: Logger;
  validateActionResults: boolean;
  /** Seam for per-role authorisation: whether this caller may write the action cache. */
  canUpdateActionCache(ctx: CallContext): boolean;
  /** The writes this process's workers have under way, which lookups wait for; absent: no workers here. */
  actionCacheWrites?: ActionCacheWrites;
}

export function actionCacheService(deps: ActionCacheDeps): ServiceHandlers<typeof ActionCache> {
  const { store, log } = deps;
  return {
    async getActionResult(request) {
      checkDigestFunction(request.digestFunction);
      const instance = instanceOf(request.instanceName);
      const result = await lookupActionResult(deps, instance, digestOf(request.actionDigest, 'action_digest').hash);
      if (result === null)
        throw new LarderError(
          'not_found',
          `no usable action result for ${request.actionDigest!.hash} (none stored, or its outputs are gone from the CAS)`,
        );
      await inlineOutputs(store, instance, result, request);
      return result;
    },

    async updateActionResult(request, ctx) {
      if (!deps.canUpdateActionCache(ctx))
        throw new LarderError('permission_denied', 'this caller may not write the action cache');
      checkDigestFunction(request.digestFunction);
      const instance = instanceOf(request.instanceName);
      const key = blobKey(instance, 'ac', digestOf(request.actionDigest, 'action_digest').hash);
      if (request.actionResult === undefined) throw new LarderError('invalid_argument', 'action_result is missing');
      await writeActionResult(store, key, request.actionResult);
      log.debug('stored action result', { key: formatKey(key) });
      return request.actionResult;
    },
  };
}

/**
 * The action result stored for `hash`, or null when there is none, it is not a valid ActionResult, or (with
 * validation on) its outputs are no longer all in the CAS: every case in which the client must run the action.
 * Shared by GetActionResult and Execute's cache lookup.
 */
export async function lookupActionResult(
  deps: Pick<ActionCacheDeps, 'store' | 'log' | 'validateActionResults' | 'actionCacheWrites'>,
  instance: string,
  hash: string,
): Promise<ActionResult | null> {
  const { store, log } = deps;
  const key = blobKey(instance, 'ac', hash);
  await deps.actionCacheWrites?.settled(key);
  const blob = await store.get(key);
  if (blob === null) return null;
  let result: ActionResult;
  try {
    result = decodeActionResult(await readWhole(blob, MAX_BUFFERED_PROTO_BYTES));
  } catch (err) {
    if (!isLarderError(err, 'invalid_argument') && !isLarderError(err, 'too_large')) throw err;
    // Someone stored bytes that are not an ActionResult (possible over HTTP): nothing usable here.
    log.warn('action cache entry is not a valid ActionResult; answering as a miss', { key: formatKey(key) });
    return null;
  }
  if (deps.validateActionResults && !(await outputsPresent(store, instance, result))) {
    log.debug('action result refers to missing outputs; answering as a miss', { key: formatKey(key) });
    return null;
  }
  return result;
}

/** What a client may ask to have inlined: GetActionResultRequest and ExecuteRequest both carry these fields. */
export type InlineRequest = Pick<GetActionResultRequest, 'inlineStdout' | 'inlineStderr' | 'inlineOutputFiles'>;

/**
 * Fills stdout_raw, stderr_raw and output file contents the client asked for, in that order, while the
 * summed size stays within MAX_INLINE_BYTES. REAPI lets a server skip any
 * of them; the digests stay set either way, so the client can always fetch the rest itself.
 */
export async function inlineOutputs(
  store: BlobStore,
  instance: string,
  result: ActionResult,
  request: InlineRequest,
): Promise<void> {
  let budget = MAX_INLINE_BYTES;
  const fetch = async (digest: DigestMessage | undefined): Promise<Uint8Array | null> => {
    if (digest === undefined || digest.sizeBytes === 0n || digest.sizeBytes > BigInt(budget)) return null;
    let key: BlobKey;
    try {
      key = blobKey(instance, 'cas', digest.hash);
    } catch {
      return null;
    }
    const blob = await store.get(key);
    if (blob === null) return null;
    if (BigInt(blob.size) !== digest.sizeBytes) {
      await blob.body.cancel();
      return null;
    }
    budget -= blob.size;
    return readWhole(blob, blob.size);
  };
  if (request.inlineStdout && result.stdoutRaw.byteLength === 0)
    result.stdoutRaw = (await fetch(result.stdoutDigest)) ?? result.stdoutRaw;
  if (request.inlineStderr && result.stderrRaw.byteLength === 0)
    result.stderrRaw = (await fetch(result.stderrDigest)) ?? result.stderrRaw;
  const wanted = new Set(request.inlineOutputFiles);
  for (const file of result.outputFiles) {
    if (wanted.has(file.path) && file.contents.byteLength === 0)
      file.contents = (await fetch(file.digest)) ?? file.contents;
  }
}
