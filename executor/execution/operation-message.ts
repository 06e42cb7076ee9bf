/**
 * An OperationState as the google.longrunning.Operation REAPI clients read: metadata is always an
 * ExecuteOperationMetadata (stage and action digest), and a done operation carries its ExecuteResponse.
 * REAPI forbids the Operation's own `error` field: failures travel inside the ExecuteResponse's status.
 */
import { create } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import {
  DigestFunction_Value,
  type ExecuteResponse,
  ExecuteOperationMetadataSchema,
  ExecuteResponseSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { type Operation, OperationSchema } from '../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { LarderError } from '../../shared/errors.ts';
import { digestMessage } from '../reapi/digests.ts';
import type { OperationState } from '../scheduler/scheduler.ts';

export function operationMessage(
  state: OperationState,
  response: ExecuteResponse | undefined = state.response,
): Operation {
  const metadata = create(ExecuteOperationMetadataSchema, {
    stage: state.stage,
    actionDigest: digestMessage(state.actionDigest),
    digestFunction: DigestFunction_Value.SHA256,
  });
  return create(OperationSchema, {
    name: state.name,
    metadata: anyPack(ExecuteOperationMetadataSchema, metadata),
    done: state.done,
    result:
      response === undefined
        ? { case: undefined }
        : { case: 'response', value: anyPack(ExecuteResponseSchema, response) },
  });
}

/** NOT_FOUND for an operation this caller may not see, in the words used for one that never existed. */
export function unknownOperation(name: string): LarderError {
  return new LarderError(
    'not_found',
    `no operation named ${JSON.stringify(name.slice(0, 120))} (unknown, or finished too long ago)`,
  );
}
