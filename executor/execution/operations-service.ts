/**
 * google.longrunning.Operations for execution operations: GetOperation (the current state, as Execute would
 * stream it) and CancelOperation (stops the run: merged waiters share the operation, so they see it cancelled
 * too). Listing, deleting and WaitOperation are not offered; WaitExecution is REAPI's way to wait.
 */
import { LarderError } from '../../shared/errors.ts';
import type { Operations } from '../../shared/proto/gen/google/longrunning/operations_pb.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';
import { Code, RpcError } from '../grpc-status.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';
import { operationMessage } from './operation-message.ts';

export function operationsService(deps: { scheduler: Scheduler }): ServiceHandlers<typeof Operations> {
  const unknown = (name: string) =>
    new LarderError('not_found', `no operation named ${JSON.stringify(name.slice(0, 120))}`);
  const unimplemented = (what: string) => async () => {
    throw new RpcError(
      Code.UNIMPLEMENTED,
      `${what} is not offered; use Execution.WaitExecution or Operations.GetOperation`,
    );
  };
  return {
    async getOperation(request) {
      const state = await deps.scheduler.get(request.name);
      if (state === null) throw unknown(request.name);
      return operationMessage(state);
    },
    async cancelOperation(request) {
      if (!(await deps.scheduler.cancel(request.name))) throw unknown(request.name);
      return {};
    },
    listOperations: unimplemented('ListOperations'),
    deleteOperation: unimplemented('DeleteOperation'),
    waitOperation: unimplemented('WaitOperation'),
  };
}
