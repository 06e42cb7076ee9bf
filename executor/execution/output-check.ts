/**
 * Checks a worker's result before a client sees it: every blob it names (output files, output directories'
 * Trees and the files in them, stdout and stderr) must be in the CAS. A worker is whoever can complete a job in
 * the queue (with Redis, any client of it), and a result pointing at blobs that are not there would make the
 * client fail instead of running the action again. Such a result is answered with UNAVAILABLE, which clients
 * (Bazel) retry: the next Execute runs the action afresh.
 *
 * The check is the action cache's (shared/ac/validate.ts: one stat per blob, Trees read); followers of one
 * operation share one check while it runs.
 */
import { create } from '@bufbuild/protobuf';
import { outputsPresent } from '../../shared/ac/validate.ts';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Code } from '../reapi/grpc-status.ts';
import type { OperationState } from '../scheduler/scheduler.ts';

/** Returns the done operation's response as it may be sent: the worker's, or UNAVAILABLE when outputs are missing. */
export type OutputCheck = (state: OperationState) => Promise<ExecuteResponse>;

export function outputCheck(deps: { store: BlobStore; log: Logger }): OutputCheck {
  const running = new Map<string, Promise<boolean>>();

  const present = (state: OperationState, response: ExecuteResponse): Promise<boolean> => {
    let check = running.get(state.name);
    if (check === undefined) {
      check = outputsPresent(deps.store, state.instance, response.result!).finally(() => running.delete(state.name));
      running.set(state.name, check);
    }
    return check;
  };

  return async (state) => {
    const response = state.response!;
    if (response.result === undefined || (await present(state, response))) return response;
    const worker = response.result.executionMetadata?.worker ?? '';
    deps.log.warn('a worker result names output blobs that are not in the CAS; not passed on', {
      operation: state.name,
      action: state.actionDigest.hash,
      worker,
    });
    return create(ExecuteResponseSchema, {
      status: {
        code: Code.UNAVAILABLE,
        message: `the result of ${state.name}${worker === '' ? '' : ` (from worker ${JSON.stringify(worker.slice(0, 120))})`} names output blobs that are not in the CAS; run the action again`,
      },
    });
  };
}
