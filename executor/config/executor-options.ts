/**
 * `larder executor`'s options: its gRPC listener, the store, logging and authentication rows it shares with the
 * edge (shared/config.ts), its metrics listener and batch size, TLS, execution (execution-options.ts), the queue
 * (queue-options.ts) and the Remote Asset API's downloads (shared/fetch-config.ts parses them).
 */
import {
  AUTH_OPTIONS,
  type ListenAddress,
  LOG_OPTIONS,
  parseAuthOptions,
  parseListen,
  parseStoreOptions,
  parseTlsOptions,
  STORE_OPTIONS,
} from '../../shared/config.ts';
import { type FetchConfig, parseFetchConfig } from '../../shared/fetch-config.ts';
import type { LogFormat, LogLevel } from '../../shared/log-options.ts';
import { type Env, type OptionRow, resolveOptions } from '../../shared/options.ts';
import { parseSize } from '../../shared/size.ts';
import type { AuthConfig } from '../../shared/auth/config.ts';
import type { StoreConfig } from '../../shared/storage/config.ts';
import { BUCKET_INDEX_OPTIONS, type BucketIndexConfig, parseBucketIndexOptions } from './bucket-index-options.ts';
import { EXECUTION_OPTIONS, type ExecutionConfig, parseExecutionOptions } from './execution-options.ts';
import { QUEUE_OPTIONS } from './queue-options.ts';

/** `larder executor`: the gRPC (REAPI v2) frontend over the same stores and keys as the edge. */
export interface ExecutorConfig {
  listen: ListenAddress;
  store: StoreConfig;
  /** --bucket-index and its TTL: a Redis index in front of the store's S3 bucket (bucket-index-options.ts). */
  bucketIndex: BucketIndexConfig;
  maxBlobBytes: number;
  /** Summed blob bytes one BatchUpdateBlobs/BatchReadBlobs call may carry; advertised in GetCapabilities. */
  maxBatchBytes: number;
  validateActionResults: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** The edge's authenticators, anonymous roles and --allow-anonymous, from the same rows. */
  auth: AuthConfig;
  /** PEM files to serve grpcs:// with; null serves plaintext grpc://. */
  tls: { certPath: string; keyPath: string } | null;
  execution: ExecutionConfig;
  /** Where to serve /metrics, /status and /healthz over HTTP; null: not served (the main port is gRPC only). */
  metricsListen: ListenAddress | null;
  /** Remote Asset API downloads: the allow-list and bounds (shared/fetch-config.ts). */
  fetch: FetchConfig;
}

/**
 * The executor shares the edge's store, size, validation, logging and authentication rows (same flags, same
 * LARDER_* twins), so one config file and one environment configure both.
 */
export const EXECUTOR_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'listen',
    env: 'LARDER_EXECUTOR_LISTEN',
    help: 'address to serve gRPC on, HOST:PORT (port 0 picks a free one)',
    default: () => '127.0.0.1:8980',
  },
  ...STORE_OPTIONS,
  ...BUCKET_INDEX_OPTIONS,
  ...LOG_OPTIONS,
  ...AUTH_OPTIONS,
  {
    flag: 'metrics-listen',
    env: 'LARDER_METRICS_LISTEN',
    help: 'HOST:PORT to serve /metrics, /status and /healthz on over HTTP (off when empty)',
    default: () => '',
  },
  {
    flag: 'max-batch-size',
    env: 'LARDER_MAX_BATCH_SIZE',
    help: 'summed blob bytes one BatchUpdateBlobs/BatchReadBlobs call may carry',
    default: () => '4MiB',
  },
  {
    flag: 'tls-cert',
    env: 'LARDER_TLS_CERT',
    help: 'PEM certificate chain; with --tls-key, serve grpcs://',
    default: () => '',
  },
  { flag: 'tls-key', env: 'LARDER_TLS_KEY', help: 'PEM private key for --tls-cert', default: () => '' },
  ...EXECUTION_OPTIONS,
  ...QUEUE_OPTIONS,
  // Remote Asset API (FetchBlob): what the executor may download, and how much of it at once.
  {
    flag: 'fetch-allow',
    env: 'LARDER_FETCH_ALLOW',
    help: 'hosts (example.com, *.example.com, HOST:PORT) and URL prefixes FetchBlob may download from; empty: none',
    default: () => '',
  },
  {
    flag: 'fetch-connect-timeout',
    env: 'LARDER_FETCH_CONNECT_TIMEOUT',
    help: 'time to connect to an upstream (DNS, TCP, TLS) for FetchBlob',
    default: () => '10s',
  },
  {
    flag: 'fetch-timeout',
    env: 'LARDER_FETCH_TIMEOUT',
    help: "time one FetchBlob download may take in all; a request's own timeout may only shorten it",
    default: () => '5m',
  },
  {
    flag: 'fetch-concurrency',
    env: 'LARDER_FETCH_CONCURRENCY',
    help: 'FetchBlob downloads from upstreams at once; more wait their turn',
    default: () => '8',
  },
];

/** Parses `larder executor` arguments (without the subcommand) and the environment into a checked config. */
export function parseExecutorConfig(args: string[], env: Env): ExecutorConfig {
  const values = resolveOptions(EXECUTOR_OPTIONS, args, env);
  const stored = parseStoreOptions(values, env);
  const { store } = stored;
  return {
    listen: parseListen(values.listen!),
    ...stored,
    bucketIndex: parseBucketIndexOptions(values, store),
    maxBatchBytes: parseSize(values['max-batch-size']!),
    auth: parseAuthOptions(values),
    tls: parseTlsOptions(values, 'grpcs'),
    execution: parseExecutionOptions(values),
    metricsListen: values['metrics-listen'] === '' ? null : parseListen(values['metrics-listen']!, '--metrics-listen'),
    fetch: parseFetchConfig(values),
  };
}
