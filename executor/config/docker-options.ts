/**
 * The docker runner's options: whether actions may ask for a container image at all (off unless the operator says
 * so), the engine, and what every container is allowed. `larder executor` and `larder worker` take the same rows.
 */
import { parseDuration } from '../../shared/duration.ts';
import { LarderError } from '../../shared/errors.ts';
import { type OptionRow, parseCount, parseSwitch } from '../../shared/options.ts';
import { parseSize } from '../../shared/size.ts';
import { imageReferenceOf } from '../reapi/image-reference.ts';

/** The Docker engine actions run on and what every container is allowed (executor/runner/docker/). */
export interface DockerConfig {
  /** `unix:///path` of the engine's API socket. */
  host: string;
  /** Memory (swap included) of one container in bytes; 0: unlimited. */
  memoryBytes: number;
  /** Processes of one container at once; 0: unlimited. */
  pids: number;
  /** Warm `dockerReuse` containers at most, busy or idle, over all images and silos. */
  poolSize: number;
  /** A warm container unused this long is removed. */
  idleMs: number;
  /** `docker://IMAGE` that actions naming no container-image run in (this pool's image); null: they run locally. */
  defaultImage: string | null;
}

export const DOCKER_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'allow-docker',
    env: 'LARDER_ALLOW_DOCKER',
    help: 'run actions that ask for a container-image in Docker (DOCKER_HOST, else /var/run/docker.sock)',
    default: () => 'off',
    boolean: true,
  },
  {
    flag: 'docker-host',
    env: 'LARDER_DOCKER_HOST',
    help: "the Docker engine's API socket, unix:///PATH",
    default: (env) => env.DOCKER_HOST || 'unix:///var/run/docker.sock',
  },
  {
    flag: 'docker-memory',
    env: 'LARDER_DOCKER_MEMORY',
    help: "memory (swap included) of each action's container; past it the action is OOM-killed (0: unlimited)",
    default: () => '4GiB',
  },
  {
    flag: 'docker-pids',
    env: 'LARDER_DOCKER_PIDS',
    help: 'processes each container may have at once (0: unlimited)',
    default: () => '4096',
  },
  {
    flag: 'docker-pool-size',
    env: 'LARDER_DOCKER_POOL_SIZE',
    help: 'warm containers kept for dockerReuse=True actions, busy or idle, over all images and silos',
    default: () => '8',
  },
  {
    flag: 'docker-idle-timeout',
    env: 'LARDER_DOCKER_IDLE_TIMEOUT',
    help: 'a warm container unused this long is removed',
    default: () => '5m',
  },
  {
    flag: 'default-container-image',
    env: 'LARDER_DEFAULT_CONTAINER_IMAGE',
    help: 'docker://IMAGE: actions whose platform names no container-image run in this image (needs --allow-docker)',
    default: () => '',
  },
];

export function parseDockerOptions(values: Record<string, string>): { allowDocker: boolean; docker: DockerConfig } {
  const allowDocker = parseSwitch('allow-docker', values['allow-docker']!);
  return {
    allowDocker,
    docker: {
      host: values['docker-host']!,
      memoryBytes: parseSize(values['docker-memory']!),
      // Above parseCount's 1024: a build's compiler fan-out needs thousands of processes.
      pids: /^\d+$/.test(values['docker-pids']!.trim())
        ? Number(values['docker-pids'])
        : parseCount('docker-pids', values['docker-pids']!, 0),
      poolSize: parseCount('docker-pool-size', values['docker-pool-size']!, 1),
      idleMs: parseDuration(values['docker-idle-timeout']!, '--docker-idle-timeout'),
      defaultImage: parseDefaultImage(values['default-container-image']!.trim(), allowDocker),
    },
  };
}

/** `docker://IMAGE`, checked as an action's container-image is; only with the docker runner to run it. */
function parseDefaultImage(value: string, allowDocker: boolean): string | null {
  if (value === '') return null;
  try {
    imageReferenceOf(value);
  } catch (err) {
    throw new LarderError('invalid_argument', `--default-container-image: ${(err as Error).message}`);
  }
  if (!allowDocker)
    throw new LarderError(
      'invalid_argument',
      '--default-container-image needs --allow-docker (actions naming no image run in it, on the docker runner)',
    );
  return value;
}
