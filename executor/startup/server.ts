/**
 * Builds the gRPC server: every REAPI cache service, ByteStream and health, registered over one set of
 * dependencies. Nothing here opens files or sockets; start.ts does that. Every call to a cache service is
 * authorised once, by the adapter, through the access gate; no service checks credentials itself.
 */
import * as grpc from '@grpc/grpc-js';
import { MAX_BUFFERED_PROTO_BYTES } from '../../shared/ac/validate.ts';
import type { AccessGate } from '../../shared/auth/gate.ts';
import type { Logger } from '../../shared/log.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
  Execution,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Operations } from '../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { ByteStream } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { Fetch, Push } from '../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import type { FetchConfig } from '../../shared/fetch-config.ts';
import { Health } from '../../shared/proto/gen/grpc/health/v1/health_pb.ts';
import { authorizeCalls, mayExecute, mayUpdateActionCache } from '../grpc/auth.ts';
import { type ExecutionDeps, executionService } from '../execution/execution-service.ts';
import { operationsService } from '../execution/operations-service.ts';
import type { PartialUploads } from '../bytestream/partial-uploads.ts';
import { addService, type AdaptOptions, type CallContext } from '../grpc/adapt.ts';
import { grpcObserver } from '../grpc/observe.ts';
import { logCalls } from '../grpc/request-metadata.ts';
import { actionCacheService, MAX_INLINE_BYTES } from '../services/action-cache.ts';
import type { ActionCacheWrites } from '../services/action-cache-writes.ts';
import { byteStreamService } from '../services/bytestream.ts';
import { capabilitiesService } from '../services/capabilities.ts';
import { casService } from '../services/cas.ts';
import { fetchService } from '../services/fetch.ts';
import { pushService } from '../services/push.ts';
import { healthService } from '../services/health.ts';
import type { Zstd } from '../reapi/zstd.ts';

export interface ExecutorServerOptions {
  store: BlobStore;
  log: Logger;
  /** Largest single blob accepted. */
  maxBlobBytes: number;
  /** Summed blob bytes of one batch call; advertised to clients. */
  maxBatchBytes: number;
  validateActionResults: boolean;
  uploads: PartialUploads;
  zstd: Zstd | null;
  /** Checks every call to a cache service; without one (in-process tests) every call goes ahead. */
  gate?: AccessGate;
  /**
   * Whether a call may write the action cache (UpdateActionResult, and what GetCapabilities reports).
   * Default: the caller's roles allow UpdateActionResult (everyone, without a gate).
   */
  canUpdateActionCache?: (ctx: CallContext) => boolean;
  /** The action cache writes of this process's workers under way, which its lookups wait for (action-cache-writes.ts). */
  actionCacheWrites?: ActionCacheWrites;
  /** Remote execution: served (and advertised) only with a scheduler that has somewhere to run actions. */
  execution?: Omit<ExecutionDeps, 'store' | 'log' | 'validateActionResults'>;
  /** Counts calls, bytes, cache requests and refusals; nothing is counted without it. */
  metrics?: Metrics;
  /** Remote Asset API downloads (FetchBlob); without it, nothing is downloaded (pushed assets are still served). */
  fetch?: FetchConfig;
}

const NO_DOWNLOADS: FetchConfig = { allow: [], connectTimeoutMs: 10_000, timeoutMs: 300_000, concurrency: 1 };

const MiB = 1024 * 1024;

/**
 * gRPC message size limits, chosen rather than left at grpc-js's 4 MiB receive default: a full batch
 * plus per-blob framing must fit, and so must the largest action result (with inlined outputs).
 * Blobs bigger than a batch travel over ByteStream in 1 MiB chunks and never come near them.
 */
export function messageLimit(maxBatchBytes: number): number {
  return Math.max(maxBatchBytes + 4 * MiB, MAX_BUFFERED_PROTO_BYTES + MAX_INLINE_BYTES + MiB);
}

export function createExecutorServer(options: ExecutorServerOptions): grpc.Server {
  const limit = messageLimit(options.maxBatchBytes);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': limit,
    'grpc.max_send_message_length': limit,
  });
  const execution = options.execution;
  const deps = {
    ...options,
    canUpdateActionCache: options.canUpdateActionCache ?? mayUpdateActionCache,
    canExecute: (ctx: CallContext) => execution !== undefined && mayExecute(ctx),
  };
  const observe = options.metrics === undefined ? undefined : grpcObserver(options.metrics);
  const open: AdaptOptions = { log: options.log, onCall: logCalls(options.log), observe };
  const guarded: AdaptOptions =
    options.gate === undefined
      ? open
      : { ...open, authorize: authorizeCalls(options.gate, options.log, options.metrics) };
  addService(server, Capabilities, capabilitiesService(deps), guarded);
  addService(server, ContentAddressableStorage, casService(deps), guarded);
  addService(server, ActionCache, actionCacheService(deps), guarded);
  addService(server, ByteStream, byteStreamService(deps), guarded);
  addService(server, Fetch, fetchService({ ...options, fetch: options.fetch ?? NO_DOWNLOADS }), guarded);
  addService(server, Push, pushService(options), guarded);
  const served = [Capabilities, ContentAddressableStorage, ActionCache, ByteStream, Fetch, Push].map((s) => s.typeName);
  if (execution !== undefined) {
    addService(server, Execution, executionService({ ...options, ...execution }), guarded);
    addService(server, Operations, operationsService({ ...options, ...execution }), guarded);
    served.push(Execution.typeName, Operations.typeName);
  }
  // Health stays open: probes and load balancers carry no credentials, and "SERVING" reveals nothing stored.
  addService(server, Health, healthService(served), open);
  return server;
}
