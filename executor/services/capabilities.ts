/**
 * Capabilities.GetCapabilities: what Bazel checks before it uses the cache. It refuses to start unless
 * the API version range covers its own (Bazel 4.2 speaks 2.0; 2.3 is the newest this server follows),
 * the digest function is one it uses (SHA256), and, when it uploads results, action-cache updates are
 * enabled.
 */
import {
  type Capabilities,
  Compressor_Value,
  DigestFunction_Value,
  SymlinkAbsolutePathStrategy_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { DIGEST_FUNCTIONS, instanceOf } from '../reapi/digests.ts';
import type { CallContext, ServiceHandlers } from '../grpc/adapt.ts';

export interface CapabilitiesDeps {
  maxBatchBytes: number;
  zstd: unknown | null;
  /** Seam for per-role authorisation: whether this caller may write the action cache. */
  canUpdateActionCache(ctx: CallContext): boolean;
  /** Whether this server executes at all (it has workers or a shared queue), and this caller may ask it to. */
  canExecute(ctx: CallContext): boolean;
}

/** REAPI priorities: lower runs sooner. The queue orders by any integer; this is the range it promises. */
export const PRIORITY_RANGE = { minPriority: -1000, maxPriority: 1000 };

export function capabilitiesService(deps: CapabilitiesDeps): ServiceHandlers<typeof Capabilities> {
  const compressors = deps.zstd === null ? [] : [Compressor_Value.ZSTD];
  return {
    async getCapabilities(request, ctx) {
      instanceOf(request.instanceName);
      return {
        cacheCapabilities: {
          digestFunctions: DIGEST_FUNCTIONS,
          actionCacheUpdateCapabilities: { updateEnabled: deps.canUpdateActionCache(ctx) },
          maxBatchTotalSizeBytes: BigInt(deps.maxBatchBytes),
          // A cache only stores what the client produced and never runs it, so absolute symlinks in
          // results are the client's business; refusing them would only make such actions uncacheable.
          symlinkAbsolutePathStrategy: SymlinkAbsolutePathStrategy_Value.ALLOWED,
          supportedCompressors: compressors,
          supportedBatchUpdateCompressors: compressors,
        },
        executionCapabilities: {
          digestFunction: DigestFunction_Value.SHA256,
          digestFunctions: DIGEST_FUNCTIONS,
          execEnabled: deps.canExecute(ctx),
          executionPriorityCapabilities: { priorities: [PRIORITY_RANGE] },
        },
        lowApiVersion: { major: 2, minor: 0 },
        highApiVersion: { major: 2, minor: 3 },
      };
    },
  };
}
