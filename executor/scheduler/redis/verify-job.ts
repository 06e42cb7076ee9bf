/**
 * The worker's side of the fleet's trust boundary. Redis holds what frontends queued, but anyone who can write
 * to it can queue a job too, and a worker writes its result to the action cache under the digest the job names:
 * a Command of someone's choosing under another action's digest would be served to every client. So a claimed
 * job is run only as what its digests say: the Action's bytes hash to the action digest, the Command's to the
 * Action's command_digest, and the platform (runner options included) is the one those two ask for, offered by
 * this worker; the queue entry's own idea of the platform is never read. The job carries the bytes the frontend
 * read from the CAS, so checking them costs no round trip: two SHA-256s and the frontend's checks again, about
 * 3 µs for a small action and 10 µs for a 5 KB compile command (the protobufs were parsed here before anyway).
 *
 * What is still taken from the queue: the instance (whose CAS the inputs come from and whose action cache the
 * result goes to; a genuine action's result there is its own), the timeout, the priority and the queue time.
 */
import { createHash } from 'node:crypto';
import { LarderError } from '../../../shared/errors.ts';
import {
  ActionSchema,
  CommandSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../../reapi/digests.ts';
import { checkAction, parseActionProto } from '../../reapi/check-action.ts';
import { unmatchedProperties, type WorkerPlatform } from '../../reapi/platform.ts';
import { Code, RpcError } from '../../reapi/grpc-status.ts';
import type { ExecutionJob } from '../scheduler.ts';
import type { QueuedJob } from './codec.ts';

/**
 * The job `queued` says it is, checked; throws INVALID_ARGUMENT when its Action or Command is not what its
 * digests say (or is malformed), FAILED_PRECONDITION when its Action asks for a platform `worker` does not offer.
 */
export function verifyJob(queued: QueuedJob, worker: WorkerPlatform): ExecutionJob {
  const { actionDigest, encoded } = queued;
  const actionHash = sha256(encoded.action);
  if (actionHash !== actionDigest.hash || encoded.action.byteLength !== actionDigest.sizeBytes)
    throw new LarderError(
      'invalid_argument',
      `the queued job's Action (${actionHash}/${encoded.action.byteLength}) does not hash to the action digest it is queued under (${actionDigest.hash}/${actionDigest.sizeBytes})`,
    );
  const action = parseActionProto(ActionSchema, encoded.action, 'Action', actionDigest.hash);
  const commandDigest = digestOf(action.commandDigest, 'Action.command_digest');
  const commandHash = sha256(encoded.command);
  if (commandHash !== commandDigest.hash || encoded.command.byteLength !== commandDigest.sizeBytes)
    throw new LarderError(
      'invalid_argument',
      `the queued job's Command (${commandHash}/${encoded.command.byteLength}) does not hash to the Action's command_digest (${commandDigest.hash}/${commandDigest.sizeBytes})`,
    );
  const command = parseActionProto(CommandSchema, encoded.command, 'Command', commandDigest.hash);
  const platform = checkAction(action, command);
  const unmatched = unmatchedProperties(platform, worker);
  if (unmatched.length > 0)
    throw new RpcError(
      Code.FAILED_PRECONDITION,
      `the queued job reached a worker that does not offer what its Action asks for (${unmatched.join(', ')}): its queue entry does not match its Action`,
    );
  return { ...queued, action, command, platform };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
