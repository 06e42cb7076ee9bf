/** What the scheduler suites share: jobs made as a frontend makes them, callers, results, and waiting for them. */
import { create, toBinary } from '@bufbuild/protobuf';
import { splitPlatform } from '../../../executor/reapi/platform.ts';
import type { Caller, ExecutionJob, OperationState, Scheduler } from '../../../executor/scheduler/scheduler.ts';
import {
  ActionSchema,
  CommandSchema,
  ExecuteResponseSchema,
  PlatformSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../helpers.ts';

export interface JobOptions {
  /** The Arch property (default amd64); null asks for none, so any worker matches. */
  arch?: string | null;
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
  const arch = options.arch === undefined ? 'amd64' : options.arch;
  const properties = arch === null ? [] : [{ name: 'Arch', value: arch }];
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

export const ALICE: Caller = { id: 'basic:alice', operator: false };
export const BOB: Caller = { id: 'basic:bob', operator: false };
export const MALLORY: Caller = { id: 'basic:mallory', operator: false };
export const OPERATOR: Caller = { id: 'basic:carol', operator: true };

/** A worker's result: the command ran and exited with `exitCode`. */
export const ok = (exitCode: number) => create(ExecuteResponseSchema, { status: { code: 0 }, result: { exitCode } });

/** Resolves once `signal` aborts (at once if it has). */
export const aborted = (signal: AbortSignal) =>
  signal.aborted
    ? Promise.resolve()
    : new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));

/** Resolves with the state once `scheduler` reports the operation done (by subscription, not polling). */
export async function whenDone(scheduler: Scheduler, name: string): Promise<OperationState> {
  let wake = () => {};
  const unsubscribe = await scheduler.subscribe(name, () => wake());
  try {
    for (;;) {
      const changed = new Promise<void>((resolve) => (wake = resolve));
      const state = await scheduler.get(name, OPERATOR);
      if (state?.done) return state;
      await changed;
    }
  } finally {
    unsubscribe?.();
  }
}
