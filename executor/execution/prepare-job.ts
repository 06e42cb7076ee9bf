/**
 * Turns an ExecuteRequest into a job the scheduler can route: reads the Action and Command from the CAS,
 * checks what can be checked before anything is queued (digests, argv, paths, timeout), and splits the
 * platform. Missing Action or Command blobs are reported as MissingBlobsError, so the client re-uploads them.
 */
import { blobKey, type Digest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import {
  ActionSchema,
  CommandSchema,
  type ExecuteRequest,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../reapi/digests.ts';
import { MissingBlobsError } from '../reapi/missing-blobs.ts';
import { PRIORITY_RANGE } from '../services/capabilities.ts';
import type { ExecutionJob } from '../scheduler/scheduler.ts';
import { checkAction, parseActionProto } from '../reapi/check-action.ts';

/** Action and Command protos are small; this bounds a hostile one. */
const MAX_PROTO_BYTES = 4 * 1024 * 1024;

export interface TimeoutPolicy {
  /** Used when the Action sets none. */
  defaultMs: number;
  /** No action runs longer, whatever it asks for. */
  maxMs: number;
}

export async function prepareJob(
  store: BlobStore,
  instance: string,
  request: ExecuteRequest,
  timeouts: TimeoutPolicy,
): Promise<Omit<ExecutionJob, 'operation'>> {
  const actionDigest = digestOf(request.actionDigest, 'action_digest');
  const priority = priorityOf(request.executionPolicy?.priority ?? 0);
  const actionBytes = await readProtoBytes(store, instance, actionDigest, 'Action');
  const action = parseActionProto(ActionSchema, actionBytes, 'Action', actionDigest.hash);
  const commandDigest = digestOf(action.commandDigest, 'Action.command_digest');
  const commandBytes = await readProtoBytes(store, instance, commandDigest, 'Command');
  const command = parseActionProto(CommandSchema, commandBytes, 'Command', commandDigest.hash);
  const platform = checkAction(action, command);
  return {
    instance,
    actionDigest,
    action,
    command,
    encoded: { action: actionBytes, command: commandBytes },
    platform,
    timeoutMs: timeoutOf(action.timeout, timeouts),
    priority,
    queuedAt: new Date(),
  };
}

/**
 * The priority, which must lie in the range Capabilities advertises. Refused rather than clamped: a client
 * asking for 5000 has misread that range, and clamping would quietly run it as 1000, as urgent as every other
 * capped request; an error names the range at once (Bazel fails the build, and the flag gets fixed).
 */
export function priorityOf(priority: number): number {
  const { minPriority, maxPriority } = PRIORITY_RANGE;
  if (priority < minPriority || priority > maxPriority)
    throw new LarderError(
      'invalid_argument',
      `ExecutionPolicy.priority ${priority} is outside the range this server offers, ${minPriority}..${maxPriority} (lower runs sooner)`,
    );
  return priority;
}

function timeoutOf(timeout: { seconds: bigint; nanos: number } | undefined, policy: TimeoutPolicy): number {
  if (timeout === undefined) return policy.defaultMs;
  const ms = Number(timeout.seconds) * 1000 + Math.floor(timeout.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 0) throw new LarderError('invalid_argument', 'Action.timeout is negative');
  if (ms === 0) return policy.defaultMs;
  return Math.min(ms, policy.maxMs);
}

/** The exact bytes of an Action or Command (what its digest covers), bounded; missing is MissingBlobsError. */
async function readProtoBytes(
  store: BlobStore,
  instance: string,
  digest: Digest,
  what: 'Action' | 'Command',
): Promise<Uint8Array> {
  if (digest.sizeBytes > MAX_PROTO_BYTES)
    throw new LarderError(
      'invalid_argument',
      `the ${what} is ${digest.sizeBytes} bytes, over the ${MAX_PROTO_BYTES}-byte limit`,
    );
  const blob = await store.get(blobKey(instance, 'cas', digest.hash));
  if (blob === null || blob.size !== digest.sizeBytes) {
    await blob?.body.cancel();
    throw new MissingBlobsError([digest]);
  }
  return readWhole(blob, MAX_PROTO_BYTES);
}
