/**
 * Execution: Execute and WaitExecution. Execute answers from the action cache when it can (the same lookup and
 * validation as GetActionResult), otherwise reads and checks the action, submits it to the scheduler (joining an
 * identical cacheable action already in flight) and streams the operation until it is done. A client that goes
 * away only stops its own stream: the run goes on, its result is cached, and WaitExecution can collect it.
 * The caller (caller.ts) becomes one of the operation's waiters: only waiters and operators may wait on it, and
 * a result is passed on only once its outputs are found in the CAS (output-check.ts). Every final response is
 * also told to `recent`, for the actions page (recent-actions.ts).
 */
import { clone, create } from '@bufbuild/protobuf';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
  type Execution,
  ExecutionStage_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { Operation } from '../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { checkDigestFunction, digestOf, instanceOf } from '../reapi/digests.ts';
import { MissingBlobsError, missingBlobsResponse } from '../reapi/missing-blobs.ts';
import type { CallContext, ServiceHandlers } from '../grpc/adapt.ts';
import { requestMetadata } from '../grpc/request-metadata.ts';
import type { Caller, OperationState, Scheduler } from '../scheduler/scheduler.ts';
import { inlineOutputs, type InlineRequest, lookupActionResult } from '../services/action-cache.ts';
import { callerOf } from './caller.ts';
import { operationMessage, unknownOperation } from './operation-message.ts';
import { outputCheck } from './output-check.ts';
import { prepareJob, priorityOf, type TimeoutPolicy } from './prepare-job.ts';
import type { ActionCacheWrites } from '../services/action-cache-writes.ts';
import type { RecentActions } from './recent-actions.ts';

export interface ExecutionDeps {
  store: BlobStore;
  log: Logger;
  validateActionResults: boolean;
  scheduler: Scheduler;
  timeouts: TimeoutPolicy;
  /** How often a stream waiting on a long action gets an update, so proxies and clients see it alive. */
  keepaliveMs: number;
  /** Where finished actions are recorded for the actions page; none: not recorded. */
  recent?: RecentActions;
  /** The action cache writes this process's workers have under way, which the cache lookup waits for. */
  actionCacheWrites?: ActionCacheWrites;
}

type Send = (operation: Operation) => Promise<void>;

export function executionService(deps: ExecutionDeps): ServiceHandlers<typeof Execution> {
  const { scheduler, store } = deps;
  const checkedResponse = outputCheck(deps);

  return {
    async execute(request, ctx, send) {
      checkDigestFunction(request.digestFunction);
      const instance = instanceOf(request.instanceName);
      const actionDigest = digestOf(request.actionDigest, 'action_digest');
      // Refused even when the cache would answer, so a wrong priority fails the first build, not a later one.
      priorityOf(request.executionPolicy?.priority ?? 0);
      if (!request.skipCacheLookup) {
        const cached = await lookupActionResult(deps, instance, actionDigest.hash);
        if (cached !== null) {
          await inlineOutputs(store, instance, cached, request);
          const response = create(ExecuteResponseSchema, { result: cached, cachedResult: true, status: { code: 0 } });
          const state: OperationState = {
            name: `operations/${randomUUID()}`,
            instance,
            actionDigest,
            stage: ExecutionStage_Value.COMPLETED,
            done: true,
            response,
          };
          await recordFinished(state, response, ctx);
          await send(operationMessage(state));
          return;
        }
      }
      let job;
      try {
        job = await prepareJob(store, instance, request, deps.timeouts);
      } catch (err) {
        if (!(err instanceof MissingBlobsError)) throw err;
        const state: OperationState = {
          name: `operations/${randomUUID()}`,
          instance,
          actionDigest,
          stage: ExecutionStage_Value.COMPLETED,
          done: true,
          response: missingBlobsResponse(err.digests),
        };
        await send(operationMessage(state));
        return;
      }
      // do_not_cache actions are never merged: each asked for a run of its own.
      const mergeKey = job.action.doNotCache ? null : `${instance}\u0000${actionDigest.hash}`;
      const caller = callerOf(ctx);
      const state = await scheduler.submit(job, mergeKey, caller.id);
      deps.log.debug('queued', { operation: state.name, action: actionDigest.hash });
      await follow(state.name, caller, request, ctx, send);
    },

    async waitExecution(request, ctx, send) {
      const caller = callerOf(ctx);
      // Someone else's operation is as unknown as one that never existed: the same answer, nothing revealed.
      if ((await scheduler.get(request.name, caller)) === null) throw unknownOperation(request.name);
      // WaitExecution has no inlining fields: its final response carries digests only.
      await follow(request.name, caller, null, ctx, send);
    },
  };

  /**
   * Streams the operation's state at every change, and again every keepaliveMs while nothing changes, until it
   * is done or the client leaves. The last message carries the ExecuteResponse, with outputs inlined as asked.
   */
  async function follow(
    name: string,
    caller: Caller,
    inline: InlineRequest | null,
    ctx: CallContext,
    send: Send,
  ): Promise<void> {
    let changed = true;
    let wake: (() => void) | null = null;
    const unsubscribe = await scheduler.subscribe(name, () => {
      changed = true;
      wake?.();
    });
    if (unsubscribe === null) throw unknownOperation(name);
    try {
      while (!ctx.signal.aborted) {
        changed = false;
        const state = await scheduler.get(name, caller);
        if (state === null) throw unknownOperation(name);
        if (state.done) {
          const response = await finalResponse(state, inline);
          await recordFinished(state, response, ctx);
          await send(operationMessage(state, response));
          return;
        }
        await send(operationMessage(state));
        if (!changed) await nextChange(ctx.signal, (resolve) => (wake = resolve));
        wake = null;
      }
    } finally {
      unsubscribe();
    }
  }

  /**
   * Tells the actions page before the client hears, so a client that saw its action finish finds it there. It
   * never throws, and costs a store read only for a failed action's stderr.
   */
  async function recordFinished(state: OperationState, response: ExecuteResponse, ctx: CallContext): Promise<void> {
    await deps.recent?.finished({
      name: state.name,
      instance: state.instance,
      actionHash: state.actionDigest.hash,
      response,
      metadata: requestMetadata(ctx.metadata),
    });
  }

  /** Waits for a change (the listener calls what `register` is given), a keepalive tick, or the client leaving. */
  function nextChange(signal: AbortSignal, register: (resolve: () => void) => void): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, deps.keepaliveMs);
      signal.addEventListener('abort', done, { once: true });
      register(done);
    });
  }

  /** The done operation's checked response, with stdout/stderr/files inlined for this caller when it asked. */
  async function finalResponse(state: OperationState, inline: InlineRequest | null) {
    const response = await checkedResponse(state);
    if (inline === null || response.result === undefined) return response;
    if (!inline.inlineStdout && !inline.inlineStderr && inline.inlineOutputFiles.length === 0) return response;
    const copy = clone(ExecuteResponseSchema, response);
    await inlineOutputs(store, state.instance, copy.result!, inline);
    return copy;
  }
}
