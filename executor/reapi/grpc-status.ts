/**
 * The executor's one mapping from errors to gRPC statuses (the edge has the HTTP twin in edge/errors.ts).
 * Services throw LarderError; the few statuses that only exist in the RPC protocols (OUT_OF_RANGE for a
 * ByteStream offset past the end, FAILED_PRECONDITION, …) are thrown as RpcError. Both become a status
 * here, for a whole call (`callStatus`) or for one blob inside a batch reply (`blobStatus`).
 */
import { create } from '@bufbuild/protobuf';
import { status as Code } from '@grpc/grpc-js';
import { type ErrorCode, isLarderError } from '../../shared/errors.ts';
import { type Status, StatusSchema } from '../../shared/proto/gen/google/rpc/status_pb.ts';

export { Code };

/** An error that already knows its gRPC code: for protocol-level answers with no LarderError twin. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
  }
}

const GRPC_CODE: Record<ErrorCode, Code> = {
  invalid_argument: Code.INVALID_ARGUMENT,
  // REAPI: a digest that does not match the data is INVALID_ARGUMENT, for batches and ByteStream alike.
  digest_mismatch: Code.INVALID_ARGUMENT,
  size_mismatch: Code.INVALID_ARGUMENT,
  // REAPI: "the client attempted to upload more than the server supported limit" is INVALID_ARGUMENT.
  too_large: Code.INVALID_ARGUMENT,
  length_required: Code.INVALID_ARGUMENT,
  not_found: Code.NOT_FOUND,
  // REAPI: "insufficient disk quota to store the blob".
  no_space: Code.RESOURCE_EXHAUSTED,
  unavailable: Code.UNAVAILABLE,
  timeout: Code.DEADLINE_EXCEEDED,
  aborted: Code.CANCELLED,
  unauthenticated: Code.UNAUTHENTICATED,
  permission_denied: Code.PERMISSION_DENIED,
  internal: Code.INTERNAL,
};

export interface CallStatus {
  code: Code;
  details: string;
  /** True for the server's own failures, which are logged at error level; client mistakes are not. */
  serverFault: boolean;
}

/** The status a failed call ends with. Unexpected errors say only "internal error" to the client. */
export function callStatus(err: unknown): CallStatus {
  if (err instanceof RpcError) return { code: err.code, details: err.message, serverFault: err.code === Code.INTERNAL };
  if (isLarderError(err)) {
    const code = GRPC_CODE[err.code];
    return { code, details: err.message, serverFault: SERVER_FAULTS.has(code) };
  }
  return { code: Code.INTERNAL, details: 'internal error', serverFault: true };
}

const SERVER_FAULTS = new Set<Code>([Code.INTERNAL, Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED]);

/** A google.rpc.Status for one entry of a batch reply (BatchUpdateBlobs, BatchReadBlobs). */
export function blobStatus(err?: unknown): Status {
  if (err === undefined) return create(StatusSchema, { code: Code.OK });
  const { code, details } = callStatus(err);
  return create(StatusSchema, { code, message: details });
}
