/**
 * Turns gRPC calls into metrics: every call by method and status code, the bytes of every message, and the
 * cache reads and writes among them as requests by kind and outcome, the same counter the edge feeds. Batch
 * calls count each blob (a BatchReadBlobs of 10 blobs, 2 missing, is 8 hits and 2 misses); calls that only ask
 * (FindMissingBlobs, GetTree, QueryWriteStatus), Capabilities, Execution and health are calls, not requests.
 */
import { status as Code } from '@grpc/grpc-js';
import type { BlobKind, Metrics, Outcome } from '../../shared/metrics/metrics.ts';
import type { CallObserver } from './adapt.ts';
import { foundBlobCount } from './found-blobs-reply.ts';

/** The cache reads and writes, by method name: their kind, and what an OK status means. */
const CACHE_METHODS: Record<string, { kind: BlobKind; ok: Outcome; batch?: true }> = {
  GetActionResult: { kind: 'ac', ok: 'hit' },
  UpdateActionResult: { kind: 'ac', ok: 'stored' },
  BatchReadBlobs: { kind: 'cas', ok: 'hit', batch: true },
  BatchUpdateBlobs: { kind: 'cas', ok: 'stored', batch: true },
  Read: { kind: 'cas', ok: 'hit' },
  Write: { kind: 'cas', ok: 'stored' },
};

/** Statuses that are the client's doing (bad request, credentials, cancelling); the rest are the server's. */
const CLIENT_FAULTS = new Set<number>([
  Code.INVALID_ARGUMENT,
  Code.UNAUTHENTICATED,
  Code.PERMISSION_DENIED,
  Code.OUT_OF_RANGE,
  Code.FAILED_PRECONDITION,
  Code.CANCELLED,
  Code.ABORTED,
]);

export function grpcObserver(metrics: Metrics): CallObserver {
  return {
    bytes: (direction, bytes) => metrics.bytes('grpc', direction, bytes),
    finished(ctx, code, reply) {
      const method = ctx.path.slice(ctx.path.lastIndexOf('/') + 1);
      metrics.grpcCall(method, Code[code] ?? String(code));
      const cache = CACHE_METHODS[method];
      if (cache === undefined) return;
      // A BatchReadBlobs reply written whole says how many blobs it carries, all found, without a list to count.
      const found = code === Code.OK ? foundBlobCount(reply) : undefined;
      if (found !== undefined) {
        if (found > 0) metrics.request('grpc', method, cache.kind, cache.ok, found);
        return;
      }
      const blobs =
        cache.batch && code === Code.OK
          ? (reply as { responses?: Array<{ status?: { code: number } }> }).responses
          : undefined;
      if (blobs === undefined) {
        metrics.request('grpc', method, cache.kind, outcomeOf(code, cache.ok));
        return;
      }
      // Counted by outcome and added once each: a batch of 1,000 blobs is a few counter updates, not 1,000.
      const counts = new Map<Outcome, number>();
      for (const blob of blobs) {
        const outcome = outcomeOf(blob.status?.code ?? Code.OK, cache.ok);
        counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      }
      for (const [outcome, count] of counts) metrics.request('grpc', method, cache.kind, outcome, count);
    },
  };
}

function outcomeOf(code: number, ok: Outcome): Outcome {
  if (code === Code.OK) return ok;
  if (code === Code.NOT_FOUND) return 'miss';
  return CLIENT_FAULTS.has(code) ? 'refused' : 'error';
}
