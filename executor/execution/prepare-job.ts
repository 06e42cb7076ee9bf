/**
 * Turns an ExecuteRequest into a job the scheduler can route: reads the Action and Command from the CAS,
 * checks what can be checked before anything is queued (digests, argv, paths, timeout), and splits the
 * platform. Missing Action or Command blobs are reported as MissingBlobsError, so the client re-uploads them.
 */
import { fromBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { blobKey, type Digest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import {
  ActionSchema,
  CommandSchema,
  type ExecuteRequest,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../digests.ts';
import { PRIORITY_RANGE } from '../services/capabilities.ts';
import type { ExecutionJob } from '../scheduler/scheduler.ts';
import { MissingBlobsError } from '../worker/stage-inputs.ts';
import { type ActionPlatform, splitPlatform } from './platform.ts';

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
  const action = await readProto(store, instance, actionDigest, ActionSchema, 'Action');
  const commandDigest = digestOf(action.commandDigest, 'Action.command_digest');
  digestOf(action.inputRootDigest, 'Action.input_root_digest');
  const command = await readProto(store, instance, commandDigest, CommandSchema, 'Command');
  if (command.arguments.length === 0 || command.arguments[0] === '')
    throw new LarderError('invalid_argument', 'the Command has no arguments (nothing to run)');
  for (const variable of command.environmentVariables) {
    if (
      variable.name === '' ||
      variable.name.includes('=') ||
      variable.name.includes('\0') ||
      variable.value.includes('\0')
    ) {
      throw new LarderError(
        'invalid_argument',
        `invalid environment variable name ${JSON.stringify(variable.name.slice(0, 80))} in the Command`,
      );
    }
  }
  if (command.arguments.some((a) => a.includes('\0')))
    throw new LarderError('invalid_argument', 'a Command argument contains a NUL byte');
  const platform = splitPlatform(action.platform, command.platform);
  checkRunnerOptions(platform);
  return {
    instance,
    actionDigest,
    action,
    command,
    platform,
    timeoutMs: timeoutOf(action.timeout, timeouts),
    priority,
    queuedAt: new Date(),
  };
}

/** Runner options that can never work together are refused before anything is queued. */
function checkRunnerOptions(platform: ActionPlatform): void {
  const { options } = platform;
  const protocol = options.get('persistentWorkerProtocol') ?? '';
  if (protocol !== '' && protocol !== 'proto' && protocol !== 'json') {
    throw new LarderError(
      'invalid_argument',
      `persistentWorkerProtocol must be proto or json, not ${JSON.stringify(protocol.slice(0, 40))}`,
    );
  }
  const persistent = (options.get('persistentWorkerKey') ?? '') !== '';
  const image = options.get('container-image') ?? '';
  if (persistent && image !== '' && !/^true$/i.test(options.get('dockerReuse') ?? '')) {
    throw new LarderError(
      'invalid_argument',
      'persistentWorkerKey with a container-image needs dockerReuse=True: a persistent worker lives in a kept container',
    );
  }
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

async function readProto<S extends DescMessage>(
  store: BlobStore,
  instance: string,
  digest: Digest,
  schema: S,
  what: string,
): Promise<MessageShape<S>> {
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
  const bytes = await readWhole(blob, MAX_PROTO_BYTES);
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new LarderError(
      'invalid_argument',
      `the ${what} ${digest.hash} is not a valid ${what} protobuf: ${(err as Error).message}`,
    );
  }
}
