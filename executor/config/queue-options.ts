/**
 * Where actions wait for a worker: `memory` (this process only) or the Redis queue a fleet of frontends and
 * `larder worker` processes shares, with its lease, password file and CA.
 */
import { parseDuration } from '../../shared/duration.ts';
import { LarderError } from '../../shared/errors.ts';
import type { OptionRow } from '../../shared/options.ts';

export interface QueueConfig {
  /** `memory` (one process, the default) or the redis:// URL of a fleet's shared queue. */
  queue: string;
  /** With a Redis queue: how long a claimed action stays a silent worker's before it is requeued. */
  queueLeaseMs: number;
  /** With a Redis queue: a file holding its password ('' : none, or the URL's), so none is on a command line. */
  queuePasswordFile: string;
  /** With a rediss:// queue: PEM CA its server's certificate is checked against ('' : the system's roots). */
  queueCaPath: string;
}

export const QUEUE_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'queue',
    env: 'LARDER_QUEUE',
    help: 'memory (this process only) or redis://[USER@]HOST:PORT (rediss:// for TLS; redis+sentinel://HOST:PORT,…/MASTER for a Sentinel-managed Redis), the queue a fleet shares',
    default: () => 'memory',
  },
  {
    flag: 'queue-lease',
    env: 'LARDER_QUEUE_LEASE',
    help: 'with a Redis queue: how long a worker that stops renewing keeps its action before it goes to another worker',
    default: () => '30s',
  },
  {
    flag: 'queue-password-file',
    env: 'LARDER_QUEUE_PASSWORD_FILE',
    help: "file holding the Redis queue's password (one line): never put it in the --queue URL on a command line",
    default: () => '',
  },
  {
    flag: 'queue-ca',
    env: 'LARDER_QUEUE_CA',
    help: "PEM CA certificate for a rediss:// queue with a private CA (default: the system's roots)",
    default: () => '',
  },
];

export function parseQueueOptions(values: Record<string, string>): QueueConfig {
  return {
    queue: parseQueue(values.queue!),
    queueLeaseMs: parseLease(values['queue-lease']!),
    ...parseQueueSecrets(values),
  };
}

export function isRedisUrl(text: string): boolean {
  return /^(rediss?|redis\+sentinel):\/\/[^/]+/.test(text);
}

function parseLease(text: string): number {
  const ms = parseDuration(text, '--queue-lease');
  if (ms < 1000)
    throw new LarderError('invalid_argument', `--queue-lease must be at least 1s, not ${JSON.stringify(text)}`);
  return ms;
}

/** --queue-password-file and --queue-ca, which only a Redis queue (a TLS one, for the CA) can use. */
function parseQueueSecrets(values: Record<string, string>): Pick<QueueConfig, 'queuePasswordFile' | 'queueCaPath'> {
  const queue = values.queue!;
  const queuePasswordFile = values['queue-password-file']!;
  const queueCaPath = values['queue-ca']!;
  if (queuePasswordFile !== '' && !isRedisUrl(queue))
    throw new LarderError(
      'invalid_argument',
      '--queue-password-file is for a Redis queue: give --queue redis://HOST:PORT',
    );
  if (queueCaPath !== '' && !queue.startsWith('rediss://'))
    throw new LarderError('invalid_argument', '--queue-ca is for a TLS queue: give --queue rediss://HOST:PORT');
  return { queuePasswordFile, queueCaPath };
}

function parseQueue(text: string): string {
  if (text === 'memory' || isRedisUrl(text)) return text;
  throw new LarderError(
    'invalid_argument',
    `--queue must be memory, redis://HOST:PORT or redis+sentinel://HOST:PORT,…/MASTER, not ${JSON.stringify(text)}`,
  );
}
