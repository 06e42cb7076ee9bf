/**
 * Blobs an action needs that the CAS does not hold, and REAPI's one answer to them: FAILED_PRECONDITION with a
 * MISSING violation per blob, which makes Bazel upload them and retry. The frontend meets them reading an Action
 * or Command before queueing (execution/prepare-job.ts), a worker while staging the input root
 * (worker/input-tree.ts, stage-inputs.ts); both answer with the same response.
 */
import { create } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { type Digest, formatDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { PreconditionFailureSchema } from '../../shared/proto/gen/google/rpc/error_details_pb.ts';
import { Code } from './grpc-status.ts';

/** Blobs an action needs that the CAS does not hold: its Action or Command, Directory protos, input files. */
export class MissingBlobsError extends LarderError {
  constructor(readonly digests: Digest[]) {
    super(
      'not_found',
      `${digests.length} input blob(s) missing from the CAS: ${digests.slice(0, 5).map(formatDigest).join(', ')}${digests.length > 5 ? ', …' : ''}`,
    );
  }
}

/** FAILED_PRECONDITION with one MISSING violation per blob: what makes Bazel upload them again and retry. */
export function missingBlobsResponse(digests: readonly Digest[]): ExecuteResponse {
  const detail = create(PreconditionFailureSchema, {
    violations: digests.map((d) => ({
      type: 'MISSING',
      subject: `blobs/${formatDigest(d)}`,
      description: 'not in the CAS',
    })),
  });
  return create(ExecuteResponseSchema, {
    status: {
      code: Code.FAILED_PRECONDITION,
      message: `${digests.length} input blob(s) are missing from the CAS`,
      details: [anyPack(PreconditionFailureSchema, detail)],
    },
  });
}
