/** Jobs for the scheduler suites, made as a frontend makes them. */
import { create, toBinary } from '@bufbuild/protobuf';
import { splitPlatform } from '../../../executor/reapi/platform.ts';
import type { ExecutionJob } from '../../../executor/scheduler/scheduler.ts';
import {
  ActionSchema,
  CommandSchema,
  PlatformSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../helpers.ts';

export interface JobOptions {
  arch?: string;
  priority?: number;
  /** The job's persistentWorkerKey (an execution option: affinity, never routing). */
  key?: string;
  /** Another routing property (a constraint), in place of Arch. */
  pool?: string;
}

/**
 * A job whose Action and Command bytes hash to the digests they are named by (a fleet's workers check that), its
 * command `true ID` so that every id is an action of its own.
 */
export function job(id: string, options: JobOptions = {}): Omit<ExecutionJob, 'operation'> {
  const properties = [{ name: 'Arch', value: options.arch ?? 'amd64' }];
  if (options.key !== undefined) properties.push({ name: 'persistentWorkerKey', value: options.key });
  if (options.pool !== undefined) properties.splice(0, 1, { name: 'Pool', value: options.pool });
  const platform = create(PlatformSchema, { properties });
  const command = create(CommandSchema, { arguments: ['true', id] });
  const commandBytes = toBinary(CommandSchema, command);
  const action = create(ActionSchema, {
    commandDigest: digestOf(commandBytes),
    inputRootDigest: digestOf(''),
    platform,
  });
  const actionBytes = toBinary(ActionSchema, action);
  const actionDigest = digestOf(actionBytes);
  return {
    instance: '',
    actionDigest: { hash: actionDigest.hash, sizeBytes: Number(actionDigest.sizeBytes) },
    action,
    command,
    encoded: { action: actionBytes, command: commandBytes },
    platform: splitPlatform(platform, undefined),
    timeoutMs: 60_000,
    priority: options.priority ?? 0,
    queuedAt: new Date(),
  };
}
