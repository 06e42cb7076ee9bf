/** `larder worker`'s options: the worker host's and the queue's rows, as the executor has them, and its frontend. */
import type { AuthConfig } from '../../shared/auth/config.ts';
import { AUTH_OPTIONS, type ListenAddress, LOG_OPTIONS, parseAuthOptions, parseListen } from '../../shared/config.ts';
import { LarderError } from '../../shared/errors.ts';
import type { LogFormat, LogLevel } from '../../shared/log-options.ts';
import { type Env, type OptionRow, parseLogFormat, parseLogLevel, resolveOptions } from '../../shared/options.ts';
import { type ExecutionConfig, parseExecutionOptions, WORKER_HOST_OPTIONS } from './execution-options.ts';
import { isRedisUrl, QUEUE_OPTIONS } from './queue-options.ts';

/** `larder worker`: a worker in its own process, taking jobs from a fleet's Redis queue. */
export interface WorkerConfig {
  /** The redis:// URL of the fleet's queue. */
  queue: string;
  queueLeaseMs: number;
  /** grpc://HOST:PORT or grpcs://HOST:PORT of a frontend, whose CAS and action cache the worker uses. */
  frontend: string;
  /** CA certificate (PEM) for a grpcs:// frontend with a private CA; '' : the system's roots. */
  frontendCaPath: string;
  /** File holding the Authorization value (`Bearer …` or `Basic …`) the frontend accepts; '' : none. */
  frontendCredentialsPath: string;
  /** Where to serve /metrics, /status and /healthz; null: not served. */
  metricsListen: ListenAddress | null;
  /** Who may read /metrics and /status (the same rows as the executor's). */
  auth: AuthConfig;
  logLevel: LogLevel;
  logFormat: LogFormat;
  execution: Omit<ExecutionConfig, 'workers' | 'queue' | 'queueLeaseMs'>;
}

/**
 * `larder worker` takes the executor's execution rows (same flags and LARDER_* twins, so one environment file
 * configures a host's worker like its executor) plus where to reach the frontend.
 */
export const WORKER_OPTIONS: readonly OptionRow[] = [
  ...LOG_OPTIONS,
  ...AUTH_OPTIONS,
  {
    flag: 'metrics-listen',
    env: 'LARDER_METRICS_LISTEN',
    help: "HOST:PORT to serve this worker's /metrics, /status and /healthz on over HTTP (off when empty)",
    default: () => '',
  },
  ...WORKER_HOST_OPTIONS,
  ...QUEUE_OPTIONS,
  {
    flag: 'frontend',
    env: 'LARDER_FRONTEND',
    help: 'grpc://HOST:PORT or grpcs://HOST:PORT of a frontend (larder executor) whose CAS the worker uses',
    default: () => '',
  },
  {
    flag: 'frontend-ca',
    env: 'LARDER_FRONTEND_CA',
    help: "PEM CA certificate for a grpcs:// frontend with a private CA (default: the system's roots)",
    default: () => '',
  },
  {
    flag: 'frontend-credentials',
    env: 'LARDER_FRONTEND_CREDENTIALS',
    help: 'file holding the Authorization value for the frontend: Bearer TOKEN or Basic BASE64 (needs the write role)',
    default: () => '',
  },
];

/** Parses `larder worker` arguments and the environment into a checked config. */
export function parseWorkerConfig(args: string[], env: Env): WorkerConfig {
  const values = resolveOptions(WORKER_OPTIONS, args, env);
  const { workers: _, queue, queueLeaseMs, ...execution } = parseExecutionOptions({ ...values, workers: '1' });
  if (!isRedisUrl(queue))
    throw new LarderError(
      'invalid_argument',
      `larder worker needs --queue redis://HOST:PORT (the fleet's queue), not ${JSON.stringify(queue)}`,
    );
  if (values.frontend === '')
    throw new LarderError(
      'invalid_argument',
      'larder worker needs --frontend grpc://HOST:PORT (a frontend whose CAS it uses)',
    );
  const logLevel = parseLogLevel(values['log-level']!);
  return {
    queue,
    queueLeaseMs,
    frontend: values.frontend!,
    frontendCaPath: values['frontend-ca']!,
    frontendCredentialsPath: values['frontend-credentials']!,
    metricsListen: values['metrics-listen'] === '' ? null : parseListen(values['metrics-listen']!, '--metrics-listen'),
    auth: parseAuthOptions(values),
    logLevel,
    logFormat: parseLogFormat(values['log-format']!),
    execution,
  };
}
