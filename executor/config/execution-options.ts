/**
 * How a worker host runs actions, in `larder executor` and `larder worker` alike (same flags and LARDER_* twins,
 * so one environment file configures a host's worker like its executor): how many at once, the platform it offers,
 * its work folder and input cache, input and time limits, the sandbox (sandbox-options.ts), the docker runner
 * (docker-options.ts), remote persistent workers and the queue (queue-options.ts).
 */
import { availableParallelism } from 'node:os';
import { defaultCacheDir } from '../../shared/config.ts';
import { parseDuration } from '../../shared/duration.ts';
import { LarderError } from '../../shared/errors.ts';
import { type Env, type OptionRow, parseCount, parseLimit } from '../../shared/options.ts';
import { parsePlatformLabels } from '../../shared/platform-properties.ts';
import { parseSize } from '../../shared/size.ts';
import { DOCKER_OPTIONS, type DockerConfig, parseDockerOptions } from './docker-options.ts';
import { parseQueueOptions, type QueueConfig } from './queue-options.ts';
import { isRoot, parseRunAs, parseSandboxLimits, SANDBOX_OPTIONS, type SandboxConfig } from './sandbox-options.ts';

/** Remote execution by `larder executor`: its in-process workers and the limits every action runs under. */
export interface ExecutionConfig extends SandboxConfig, QueueConfig {
  /** In-process workers (0: a frontend that executes nothing itself). */
  workers: number;
  /** Actions one worker runs at once. */
  concurrency: number;
  /** Labels the workers offer besides the detected OSFamily and Arch (`--platform Pool=big,cpu=avx2`). */
  platform: Map<string, string[]>;
  /** Per-action directories and the input file cache live here. */
  workDir: string;
  inputCacheBytes: number;
  /** What one action's input root may stage, counted before anything is (a directory named twice counts twice). */
  inputLimits: { maxFiles: number; maxDirectories: number; maxBytes: number };
  /** Timeout of an action that sets none, and the most any action gets. */
  actionTimeoutMs: number;
  maxActionTimeoutMs: number;
  /** Files of the server's an action must never see (config, htpasswd, TLS key, credentials): hidden in the sandbox. */
  secretPaths: string[];
  /** Whether actions may ask for a container image (the docker runner); off unless the operator says so. */
  allowDocker: boolean;
  /** The docker runner's engine and container bounds (used only with allowDocker). */
  docker: DockerConfig;
  /** The runners whose actions may use remote persistent workers (`persistentWorkerKey`); none by default. */
  persistentWorkers: ReadonlySet<'local' | 'docker'>;
}

/** What a worker host needs, in `larder executor` and `larder worker` alike: runners, limits, its work folder. */
export const WORKER_HOST_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'concurrency',
    env: 'LARDER_CONCURRENCY',
    help: 'actions one worker runs at once',
    default: () => String(availableParallelism()),
  },
  {
    flag: 'platform',
    env: 'LARDER_PLATFORM',
    help: 'labels the workers offer besides OSFamily and Arch: key=value,key=value',
    default: () => '',
  },
  {
    flag: 'work-dir',
    env: 'LARDER_WORK_DIR',
    help: 'where actions are staged and input files cached',
    default: (env) => defaultWorkDir(env),
  },
  {
    flag: 'input-cache-size',
    env: 'LARDER_INPUT_CACHE_SIZE',
    help: 'size of the local input file cache actions are staged from (hard links)',
    default: () => '4GiB',
  },
  // Input root limits: far above real actions (the largest stage some hundreds of thousands of files: runfiles trees,
  // node_modules), far below what a few kilobytes of Directory protos naming one directory many times expand to.
  {
    flag: 'max-input-files',
    env: 'LARDER_MAX_INPUT_FILES',
    help: 'files and symlinks one action may stage, each counted wherever its directory appears',
    default: () => '1000000',
  },
  {
    flag: 'max-input-dirs',
    env: 'LARDER_MAX_INPUT_DIRS',
    help: 'directories one action may stage, counted wherever they appear',
    default: () => '100000',
  },
  {
    flag: 'max-input-bytes',
    env: 'LARDER_MAX_INPUT_BYTES',
    help: 'bytes of files one action may stage, a file counted wherever it appears',
    default: () => '64GiB',
  },
  {
    flag: 'action-timeout',
    env: 'LARDER_ACTION_TIMEOUT',
    help: 'timeout of an action that sets none',
    default: () => '15m',
  },
  {
    flag: 'max-action-timeout',
    env: 'LARDER_MAX_ACTION_TIMEOUT',
    help: 'the longest any action may run, whatever it asks for',
    default: () => '3h',
  },
  ...SANDBOX_OPTIONS,
  ...DOCKER_OPTIONS,
  {
    flag: 'persistent-workers',
    env: 'LARDER_PERSISTENT_WORKERS',
    help: 'runners whose actions may use remote persistent workers: local, docker, or both (local,docker)',
    default: () => '',
  },
];

/** `larder executor`'s execution rows: its in-process workers, then what every worker host takes. */
export const EXECUTION_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'workers',
    env: 'LARDER_WORKERS',
    help: 'in-process workers that execute actions (0: execute nothing here)',
    default: () => '1',
  },
  ...WORKER_HOST_OPTIONS,
];

/** The execution rows and the queue's (QUEUE_OPTIONS), checked; `workers` as the executor's table has it. */
export function parseExecutionOptions(values: Record<string, string>): ExecutionConfig {
  const actionTimeoutMs = parseDuration(values['action-timeout']!, '--action-timeout');
  const maxActionTimeoutMs = parseDuration(values['max-action-timeout']!, '--max-action-timeout');
  if (actionTimeoutMs <= 0 || actionTimeoutMs > maxActionTimeoutMs) {
    throw new LarderError(
      'invalid_argument',
      `--action-timeout must be above zero and at most --max-action-timeout (${values['max-action-timeout']})`,
    );
  }
  const identity = parseRunAs(values);
  return {
    workers: parseCount('workers', values.workers!, 0),
    concurrency: parseCount('concurrency', values.concurrency!, 1),
    platform: parsePlatformLabels(values.platform!),
    workDir: values['work-dir']!,
    inputCacheBytes: parseSize(values['input-cache-size']!),
    inputLimits: {
      maxFiles: parseLimit('max-input-files', values['max-input-files']!),
      maxDirectories: parseLimit('max-input-dirs', values['max-input-dirs']!),
      maxBytes: parseSize(values['max-input-bytes']!),
    },
    actionTimeoutMs,
    maxActionTimeoutMs,
    ...identity,
    ...parseSandboxLimits(values),
    secretPaths: ['config', 'htpasswd', 'tls-key', 'frontend-credentials', 'queue-password-file']
      .map((flag) => values[flag] ?? '')
      .filter((path) => path !== ''),
    ...parseDockerOptions(values),
    persistentWorkers: parseRunnerList('persistent-workers', values['persistent-workers']!),
    ...parseQueueOptions(values),
  };
}

function parseRunnerList(flag: string, text: string): Set<'local' | 'docker'> {
  const runners = new Set<'local' | 'docker'>();
  for (const name of text
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '')) {
    if (name !== 'local' && name !== 'docker')
      throw new LarderError(
        'invalid_argument',
        `--${flag} takes local, docker or local,docker, not ${JSON.stringify(name)}`,
      );
    runners.add(name);
  }
  return runners;
}

/**
 * Where actions are staged unless told otherwise. As root, under /var/cache: actions run as an unprivileged
 * user, who could not reach into root's home (0700). Otherwise beside the blob store's default folder.
 */
export function defaultWorkDir(env: Env): string {
  if (isRoot()) return '/var/cache/larder-work';
  return `${defaultCacheDir(env)}-work`;
}
