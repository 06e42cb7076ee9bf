/**
 * What can be checked of an Action and its Command before anything runs: protobufs that parse, an input root,
 * an argv, environment variables a process can be given, a platform and runner options that go together. The
 * frontend checks before it queues (prepare-job.ts); a fleet's worker checks again what it claims from Redis
 * (scheduler/redis/verify-job.ts), which a frontend need not have written. Errors are INVALID_ARGUMENT.
 */
import { type DescMessage, fromBinary, type MessageShape } from '@bufbuild/protobuf';
import { LarderError } from '../../shared/errors.ts';
import type { Action, Command } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from './digests.ts';
import { type ActionPlatform, splitPlatform } from './platform.ts';

/** Parses an Action or Command read as `hash`; a malformed one is INVALID_ARGUMENT naming it. */
export function parseActionProto<S extends DescMessage>(
  schema: S,
  bytes: Uint8Array,
  what: 'Action' | 'Command',
  hash: string,
): MessageShape<S> {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new LarderError(
      'invalid_argument',
      `the ${what} ${hash} is not a valid ${what} protobuf: ${(err as Error).message}`,
    );
  }
}

/** Checks `action` with its `command` and returns the platform they ask for. */
export function checkAction(action: Action, command: Command): ActionPlatform {
  digestOf(action.inputRootDigest, 'Action.input_root_digest');
  if (command.arguments.length === 0 || command.arguments[0] === '')
    throw new LarderError('invalid_argument', 'the Command has no arguments (nothing to run)');
  for (const variable of command.environmentVariables) {
    if (
      variable.name === '' ||
      variable.name.includes('=') ||
      variable.name.includes('\0') ||
      variable.value.includes('\0')
    ) {
      throw new LarderError(
        'invalid_argument',
        `invalid environment variable name ${JSON.stringify(variable.name.slice(0, 80))} in the Command`,
      );
    }
  }
  if (command.arguments.some((a) => a.includes('\0')))
    throw new LarderError('invalid_argument', 'a Command argument contains a NUL byte');
  const platform = splitPlatform(action.platform, command.platform);
  checkRunnerOptions(platform);
  return platform;
}

/** Runner options that can never work together are refused before anything is queued. */
function checkRunnerOptions(platform: ActionPlatform): void {
  const { options } = platform;
  const protocol = options.get('persistentWorkerProtocol') ?? '';
  if (protocol !== '' && protocol !== 'proto' && protocol !== 'json') {
    throw new LarderError(
      'invalid_argument',
      `persistentWorkerProtocol must be proto or json, not ${JSON.stringify(protocol.slice(0, 40))}`,
    );
  }
  const persistent = (options.get('persistentWorkerKey') ?? '') !== '';
  const image = options.get('container-image') ?? '';
  if (persistent && image !== '' && !/^true$/i.test(options.get('dockerReuse') ?? '')) {
    throw new LarderError(
      'invalid_argument',
      'persistentWorkerKey with a container-image needs dockerReuse=True: a persistent worker lives in a kept container',
    );
  }
}
