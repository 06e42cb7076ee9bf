/**
 * google.longrunning.Operations for execution operations: GetOperation (the current state, as Execute would
 * stream it) and CancelOperation. Both reach only operations the caller waits on (or, for an operator, any):
 * another caller's operation is NOT_FOUND, as an unknown one is. Cancelling a merged operation ends only the
 * caller's wait; the run stops when no waiter is left (or when an operator that does not wait cancels it).
 * Listing, deleting and WaitOperation are not offered; WaitExecution is REAPI's way to wait.
 */
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import type { Operations } from '../../shared/proto/gen/google/longrunning/operations_pb.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';
import { Code, RpcError } from '../reapi/grpc-status.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';
import { callerOf } from './caller.ts';
import { operationMessage, unknownOperation } from './operation-message.ts';
import { outputCheck } from './output-check.ts';

export function operationsService(deps: {
  scheduler: Scheduler;
  store: BlobStore;
  log: Logger;
}): ServiceHandlers<typeof Operations> {
  const checkedResponse = outputCheck(deps);
  const unimplemented = (what: string) => async () => {
    throw new RpcError(
      Code.UNIMPLEMENTED,
      `${what} is not offered; use Execution.WaitExecution or Operations.GetOperation`,
    );
  };
  return {
    async getOperation(request, ctx) {
      const state = await deps.scheduler.get(request.name, callerOf(ctx));
      if (state === null) throw unknownOperation(request.name);
      return operationMessage(state, state.done ? await checkedResponse(state) : undefined);
    },
    async cancelOperation(request, ctx) {
      if (!(await deps.scheduler.cancel(request.name, callerOf(ctx)))) throw unknownOperation(request.name);
      return {};
    },
    listOperations: unimplemented('ListOperations'),
    deleteOperation: unimplemented('DeleteOperation'),
    waitOperation: unimplemented('WaitOperation'),
  };
}
