/**
 * Command-line flags and their environment twins, checked once at start-up. Every option has one row in
 * OPTIONS: its flag, its LARDER_* variable, its default and its help text; `--help` and the README's
 * configuration reference are written from the same rows. A flag beats its variable, which beats the default.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { type AuthConfig, parseAuthConfig } from './auth/config.ts';
import { parseDuration } from './duration.ts';
import { parsePlatformLabels } from './platform-properties.ts';
import { LarderError } from './errors.ts';
import { type FetchConfig, parseFetchConfig } from './fetch-config.ts';
import { isLogFormat, isLogLevel, type LogFormat, type LogLevel } from './log-options.ts';
import { parseSize } from './size.ts';
import { parseStoreSpec, type StoreConfig } from './storage/config.ts';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface EdgeConfig {
  listen: ListenAddress;
  store: StoreConfig;
  maxBlobBytes: number;
  validateActionResults: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
  auth: AuthConfig;
  /** PEM files to serve https:// with; null serves plain http://. */
  tls: { certPath: string; keyPath: string } | null;
  /** A connection that sends and receives nothing for this long is closed; there is no overall request deadline. */
  idleTimeoutMs: number;
  /** Open connections at most; null: derived from the file-descriptor limit (edge/connections.ts). */
  maxConnections: number | null;
  /** Processes serving the one port and store (Node; edge/node-processes.ts); resolved from `auto` here. */
  processes: number;
}

/** `larder executor`: the gRPC (REAPI v2) frontend over the same stores and keys as the edge. */
export interface ExecutorConfig {
  listen: ListenAddress;
  store: StoreConfig;
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

/** The Docker engine actions run on and what every container is allowed (executor/worker/docker/). */
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
}

/** Remote execution by `larder executor`: its in-process workers and the limits every action runs under. */
export interface ExecutionConfig {
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
  /** One user every action runs as when the server runs as root (`--run-as`); '' : a uid of its own per slot. */
  runAs: string;
  /** The uids actions and persistent workers run as, one per slot, when the server runs as root and no runAs. */
  runAsUids: { first: number; last: number } | null;
  /** Every local action and persistent worker in a namespace sandbox of its own (bubblewrap); off only by choice. */
  sandbox: boolean;
  /** Whether an action may ask for the network (`network=on`); without it, sandboxed actions have none. */
  allowNetwork: boolean;
  /** Memory of one local action (its cgroup, all its processes); 0: unlimited. */
  actionMemoryBytes: number;
  /** Processes (tasks) of one local action at once; 0: unlimited. */
  actionPids: number;
  /** Files of the server's an action must never see (config, htpasswd, TLS key, credentials): hidden in the sandbox. */
  secretPaths: string[];
  /** Whether actions may ask for a container image (the docker runner); off unless the operator says so. */
  allowDocker: boolean;
  /** The docker runner's engine and container bounds (used only with allowDocker). */
  docker: DockerConfig;
  /** The runners whose actions may use remote persistent workers (`persistentWorkerKey`); none by default. */
  persistentWorkers: ReadonlySet<'local' | 'docker'>;
  /** `memory` (one process, the default) or the redis:// URL of a fleet's shared queue. */
  queue: string;
  /** With a Redis queue: how long a claimed action stays a silent worker's before it is requeued. */
  queueLeaseMs: number;
  /** With a Redis queue: a file holding its password ('' : none, or the URL's), so none is on a command line. */
  queuePasswordFile: string;
  /** With a rediss:// queue: PEM CA its server's certificate is checked against ('' : the system's roots). */
  queueCaPath: string;
}

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
  logLevel: LogLevel;
  logFormat: LogFormat;
  execution: Omit<ExecutionConfig, 'workers' | 'queue' | 'queueLeaseMs'>;
}

interface OptionRow {
  flag: string;
  env: string;
  help: string;
  default: (env: Env) => string;
  /** A switch: `--flag` alone means on; its variable takes on/off. */
  boolean?: true;
}

export type Env = Record<string, string | undefined>;

export const EDGE_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'listen',
    env: 'LARDER_LISTEN',
    help: 'address to serve HTTP on, HOST:PORT (port 0 picks a free one)',
    default: () => '127.0.0.1:8080',
  },
  {
    flag: 'store',
    env: 'LARDER_STORE',
    help: 'where blobs live: disk:PATH[@SIZE], memory[:SIZE], s3://BUCKET/PREFIX or tiered(FRONT,…,BACK)',
    default: (env) => `disk:${defaultCacheDir(env)}`,
  },
  {
    flag: 'max-size',
    env: 'LARDER_MAX_SIZE',
    help: 'size budget of the store; least recently used blobs are evicted past it',
    default: () => '10GiB',
  },
  {
    flag: 'max-blob-size',
    env: 'LARDER_MAX_BLOB_SIZE',
    help: 'largest single blob accepted (HTTP 413, gRPC INVALID_ARGUMENT above it)',
    default: () => '4GiB',
  },
  {
    flag: 'ac-validation',
    env: 'LARDER_AC_VALIDATION',
    help: 'on: an action-cache entry whose outputs are gone from the CAS is a miss',
    default: () => 'on',
  },
  { flag: 'log-level', env: 'LARDER_LOG_LEVEL', help: 'debug, info, warn, error or silent', default: () => 'info' },
  {
    flag: 'log-format',
    env: 'LARDER_LOG_FORMAT',
    help: 'json (one object per line), text, or auto: text when stdout is a terminal, else json',
    default: () => 'auto',
  },
  {
    flag: 'config',
    env: 'LARDER_CONFIG',
    help: 'JSON config file: role mappings, anonymous roles, OIDC and htpasswd details',
    default: () => '',
  },
  {
    flag: 'config-json',
    env: 'LARDER_CONFIG_JSON',
    help: "the config file's JSON itself, for platforms without files (Deno Deploy); not with --config",
    default: () => '',
  },
  {
    flag: 'oidc-issuer',
    env: 'LARDER_OIDC_ISSUER',
    help: 'accept bearer JWTs from this OpenID Connect issuer (its exact iss)',
    default: () => '',
  },
  {
    flag: 'oidc-audience',
    env: 'LARDER_OIDC_AUDIENCE',
    help: "the aud the issuer's tokens must carry for this cache",
    default: () => '',
  },
  {
    flag: 'htpasswd',
    env: 'LARDER_HTPASSWD',
    help: 'accept HTTP Basic users from this htpasswd file (bcrypt or {SHA}; reloaded on change)',
    default: () => '',
  },
  {
    flag: 'allow-anonymous',
    env: 'LARDER_ALLOW_ANONYMOUS',
    help: 'allow serving beyond loopback without any authenticator',
    default: () => 'off',
    boolean: true,
  },
  {
    flag: 'tls-cert',
    env: 'LARDER_TLS_CERT',
    help: 'PEM certificate chain; with --tls-key, serve https://',
    default: () => '',
  },
  { flag: 'tls-key', env: 'LARDER_TLS_KEY', help: 'PEM private key for --tls-cert', default: () => '' },
  {
    flag: 'idle-timeout',
    env: 'LARDER_IDLE_TIMEOUT',
    help: 'close a connection idle (no bytes either way) this long; uploads that keep moving have no deadline',
    default: () => '90s',
  },
  {
    flag: 'max-connections',
    env: 'LARDER_MAX_CONNECTIONS',
    help: 'open connections at most (auto: from the open-file limit); more are refused',
    default: () => 'auto',
  },
  {
    flag: 'processes',
    env: 'LARDER_PROCESSES',
    help: 'processes serving the one port and store (auto: one per core, 1 when the store holds blobs in memory)',
    default: () => 'auto',
  },
];

/** Parses `larder edge` arguments (without the subcommand) and the environment into a checked config. */
export function parseEdgeConfig(args: string[], env: Env): EdgeConfig {
  const values = resolveOptions(EDGE_OPTIONS, args, env);
  const config = {
    listen: parseListen(values.listen!),
    ...parseStoreOptions(values, env),
    auth: parseAuthOptions(values),
    tls: parseTlsOptions(values, 'https'),
    ...parseConnectionOptions(values),
  };
  return { ...config, processes: parseProcesses(values.processes!, config.store) };
}

/**
 * Several processes share a store only if it lives outside them (disk, S3): each would hold its own memory store
 * (or memory tier), and a blob uploaded to one process would be missing, or an action result stale, on another.
 */
function parseProcesses(text: string, store: StoreConfig): number {
  const shareable = storeIsShareable(store);
  if (text === 'auto') return shareable ? availableParallelism() : 1;
  if (!/^\d+$/.test(text) || Number(text) < 1)
    throw new LarderError(
      'invalid_argument',
      `--processes must be auto or a positive number, not ${JSON.stringify(text)}`,
    );
  if (Number(text) > 1 && !shareable) {
    throw new LarderError(
      'invalid_argument',
      '--processes above 1 needs a store the processes can share (disk or s3, no memory tier): each process would hold its own memory store',
    );
  }
  return Number(text);
}

function storeIsShareable(store: StoreConfig): boolean {
  if (store.kind === 'memory') return false;
  return store.kind !== 'tiered' || store.tiers.every(storeIsShareable);
}

function parseConnectionOptions(values: Record<string, string>): Pick<EdgeConfig, 'idleTimeoutMs' | 'maxConnections'> {
  const idleTimeoutMs = parseDuration(values['idle-timeout']!, '--idle-timeout');
  if (idleTimeoutMs < 1000) throw new LarderError('invalid_argument', '--idle-timeout must be at least 1s');
  const max = values['max-connections']!;
  if (max === 'auto') return { idleTimeoutMs, maxConnections: null };
  if (!/^\d+$/.test(max) || Number(max) < 1)
    throw new LarderError(
      'invalid_argument',
      `--max-connections must be auto or a positive number, not ${JSON.stringify(max)}`,
    );
  return { idleTimeoutMs, maxConnections: Number(max) };
}

/** The AUTH_FLAGS rows and the config file they point at, for every server role alike. */
function parseAuthOptions(values: Record<string, string>): AuthConfig {
  return parseAuthConfig(configJson(values.config!, values['config-json']!), {
    oidcIssuer: values['oidc-issuer']!,
    oidcAudience: values['oidc-audience']!,
    htpasswd: values.htpasswd!,
    allowAnonymous: parseSwitch('allow-anonymous', values['allow-anonymous']!),
  });
}

/** The parsed JSON of `--config FILE` or of `--config-json JSON`, or null without either. */
function configJson(path: string, inline: string): unknown {
  if (path !== '' && inline !== '')
    throw new LarderError(
      'invalid_argument',
      '--config and --config-json are two ways to say the same thing: give one',
    );
  if (inline === '') return readConfigFile(path);
  try {
    return JSON.parse(inline);
  } catch (err) {
    throw new LarderError('invalid_argument', `--config-json is not valid JSON: ${(err as Error).message}`);
  }
}

function readConfigFile(path: string): unknown {
  if (path === '') return null;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LarderError('invalid_argument', `--config ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LarderError('invalid_argument', `--config ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The options that configure authentication; every server role takes all of them, parsed by parseAuthOptions. */
const AUTH_FLAGS = ['config', 'config-json', 'oidc-issuer', 'oidc-audience', 'htpasswd', 'allow-anonymous'];

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
  ...EDGE_OPTIONS.filter((row) =>
    ['store', 'max-size', 'max-blob-size', 'ac-validation', 'log-level', 'log-format', ...AUTH_FLAGS].includes(
      row.flag,
    ),
  ),
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
  {
    flag: 'workers',
    env: 'LARDER_WORKERS',
    help: 'in-process workers that execute actions (0: execute nothing here)',
    default: () => '1',
  },
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
  {
    flag: 'run-as',
    env: 'LARDER_RUN_AS',
    help: 'one user every action runs as when larder runs as root (default: a uid of its own per slot, --run-as-uids)',
    default: () => '',
  },
  {
    flag: 'run-as-uids',
    env: 'LARDER_RUN_AS_UIDS',
    help: 'FIRST-LAST: the uids actions and persistent workers run as when larder runs as root, one per slot',
    default: () => (isRoot() ? DEFAULT_RUN_AS_UIDS : ''),
  },
  {
    flag: 'sandbox',
    env: 'LARDER_SANDBOX',
    help: 'on: every local action in namespaces of its own (bubblewrap); off: unisolated, only if you trust every client',
    default: () => 'on',
  },
  {
    flag: 'allow-network',
    env: 'LARDER_ALLOW_NETWORK',
    help: 'let actions that ask for it (platform property network=on) use the host network; none have it otherwise',
    default: () => 'off',
    boolean: true,
  },
  {
    flag: 'action-memory',
    env: 'LARDER_ACTION_MEMORY',
    help: 'memory of each local action, all its processes together (its cgroup); past it it is OOM-killed (0: unlimited)',
    default: () => '4GiB',
  },
  {
    flag: 'action-pids',
    env: 'LARDER_ACTION_PIDS',
    help: 'processes each local action may have at once (its cgroup; 0: unlimited)',
    default: () => '4096',
  },
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
    flag: 'persistent-workers',
    env: 'LARDER_PERSISTENT_WORKERS',
    help: 'runners whose actions may use remote persistent workers: local, docker, or both (local,docker)',
    default: () => '',
  },
  {
    flag: 'queue',
    env: 'LARDER_QUEUE',
    help: 'memory (this process only) or redis://[USER@]HOST:PORT (rediss:// for TLS), the queue a fleet shares',
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

/** What a worker host needs, in `larder executor` and `larder worker` alike: runners, limits, its work folder. */
const WORKER_HOST_FLAGS = [
  'concurrency',
  'platform',
  'work-dir',
  'input-cache-size',
  'max-input-files',
  'max-input-dirs',
  'max-input-bytes',
  'action-timeout',
  'max-action-timeout',
  'run-as',
  'run-as-uids',
  'sandbox',
  'allow-network',
  'action-memory',
  'action-pids',
  'allow-docker',
  'docker-host',
  'docker-memory',
  'docker-pids',
  'docker-pool-size',
  'docker-idle-timeout',
  'persistent-workers',
];

/**
 * `larder worker` takes the executor's execution rows (same flags and LARDER_* twins, so one environment file
 * configures a host's worker like its executor) plus where to reach the frontend.
 */
export const WORKER_OPTIONS: readonly OptionRow[] = [
  ...EXECUTOR_OPTIONS.filter((row) =>
    [
      ...WORKER_HOST_FLAGS,
      'queue',
      'queue-lease',
      'queue-password-file',
      'queue-ca',
      'log-level',
      'log-format',
    ].includes(row.flag),
  ),
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
  const logLevel = values['log-level']!;
  if (!isLogLevel(logLevel))
    throw new LarderError(
      'invalid_argument',
      `--log-level must be debug, info, warn, error or silent, not ${logLevel}`,
    );
  return {
    queue,
    queueLeaseMs,
    frontend: values.frontend!,
    frontendCaPath: values['frontend-ca']!,
    frontendCredentialsPath: values['frontend-credentials']!,
    logLevel,
    logFormat: parseLogFormat(values['log-format']!),
    execution,
  };
}

function isRedisUrl(text: string): boolean {
  return /^rediss?:\/\/[^/]+/.test(text);
}

/** Parses `larder executor` arguments (without the subcommand) and the environment into a checked config. */
export function parseExecutorConfig(args: string[], env: Env): ExecutorConfig {
  const values = resolveOptions(EXECUTOR_OPTIONS, args, env);
  return {
    listen: parseListen(values.listen!),
    ...parseStoreOptions(values, env),
    maxBatchBytes: parseSize(values['max-batch-size']!),
    auth: parseAuthOptions(values),
    tls: parseTlsOptions(values, 'grpcs'),
    execution: parseExecutionOptions(values),
    metricsListen: values['metrics-listen'] === '' ? null : parseListen(values['metrics-listen']!, '--metrics-listen'),
    fetch: parseFetchConfig(values),
  };
}

function parseExecutionOptions(values: Record<string, string>): ExecutionConfig {
  const actionTimeoutMs = parseDuration(values['action-timeout']!, '--action-timeout');
  const maxActionTimeoutMs = parseDuration(values['max-action-timeout']!, '--max-action-timeout');
  if (actionTimeoutMs <= 0 || actionTimeoutMs > maxActionTimeoutMs) {
    throw new LarderError(
      'invalid_argument',
      `--action-timeout must be above zero and at most --max-action-timeout (${values['max-action-timeout']})`,
    );
  }
  const runAs = values['run-as']!;
  if (isRoot() && (runAs === 'root' || runAs === '0')) {
    throw new LarderError(
      'invalid_argument',
      '--run-as: larder runs as root, and actions never do; name an unprivileged user',
    );
  }
  const runAsUids = runAs === '' ? parseUidRange(values['run-as-uids']!) : null;
  if (isRoot() && runAs === '' && runAsUids === null) {
    throw new LarderError(
      'invalid_argument',
      `larder runs as root, and actions never do: give --run-as-uids FIRST-LAST (default ${DEFAULT_RUN_AS_UIDS}) or --run-as USER`,
    );
  }
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
    runAs,
    runAsUids,
    sandbox: parseSwitch('sandbox', values.sandbox!),
    allowNetwork: parseSwitch('allow-network', values['allow-network']!),
    actionMemoryBytes: parseSize(values['action-memory']!),
    actionPids: /^\d+$/.test(values['action-pids']!.trim())
      ? Number(values['action-pids'])
      : parseCount('action-pids', values['action-pids']!, 0),
    secretPaths: ['config', 'htpasswd', 'tls-key', 'frontend-credentials', 'queue-password-file']
      .map((flag) => values[flag] ?? '')
      .filter((path) => path !== ''),
    allowDocker: parseSwitch('allow-docker', values['allow-docker']!),
    docker: {
      host: values['docker-host']!,
      memoryBytes: parseSize(values['docker-memory']!),
      // Above parseCount's 1024: a build's compiler fan-out needs thousands of processes.
      pids: /^\d+$/.test(values['docker-pids']!.trim())
        ? Number(values['docker-pids'])
        : parseCount('docker-pids', values['docker-pids']!, 0),
      poolSize: parseCount('docker-pool-size', values['docker-pool-size']!, 1),
      idleMs: parseDuration(values['docker-idle-timeout']!, '--docker-idle-timeout'),
    },
    persistentWorkers: parseRunnerList('persistent-workers', values['persistent-workers']!),
    queue: parseQueue(values.queue!),
    queueLeaseMs: parseLease(values['queue-lease']!),
    ...parseQueueSecrets(values),
  };
}

/**
 * The default uids of actions: far above any user database's range (and above the 100000-165535 subordinate
 * ranges container tools hand out), so no real user or container mapping shares one.
 */
const DEFAULT_RUN_AS_UIDS = '1900000000-1900001023';

function parseUidRange(text: string): { first: number; last: number } | null {
  if (text.trim() === '') return null;
  const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  const first = Number(match?.[1]);
  const last = Number(match?.[2]);
  if (match === null || first < 1 || last < first || last > 0xfffffffe) {
    throw new LarderError(
      'invalid_argument',
      `--run-as-uids takes FIRST-LAST, two uids above 0 (say ${DEFAULT_RUN_AS_UIDS}), not ${JSON.stringify(text)}`,
    );
  }
  return { first, last };
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

function parseLease(text: string): number {
  const ms = parseDuration(text, '--queue-lease');
  if (ms < 1000)
    throw new LarderError('invalid_argument', `--queue-lease must be at least 1s, not ${JSON.stringify(text)}`);
  return ms;
}

/** --queue-password-file and --queue-ca, which only a Redis queue (a TLS one, for the CA) can use. */
function parseQueueSecrets(values: Record<string, string>): Pick<ExecutionConfig, 'queuePasswordFile' | 'queueCaPath'> {
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
  throw new LarderError('invalid_argument', `--queue must be memory or redis://HOST:PORT, not ${JSON.stringify(text)}`);
}

/** A count with no upper bound of its own (parseCount stops at 1024): at least 1. */
function parseLimit(flag: string, text: string): number {
  const value = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || value < 1 || !Number.isSafeInteger(value))
    throw new LarderError(
      'invalid_argument',
      `--${flag} must be a whole number of at least 1, not ${JSON.stringify(text)}`,
    );
  return value;
}

function parseCount(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > 1024)
    throw new LarderError(
      'invalid_argument',
      `--${flag} must be a whole number from ${min} to 1024, not ${JSON.stringify(text)}`,
    );
  return value;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Where actions are staged unless told otherwise. As root, under /var/cache: actions run as an unprivileged
 * user, who could not reach into root's home (0700). Otherwise beside the blob store's default folder.
 */
export function defaultWorkDir(env: Env): string {
  if (isRoot()) return '/var/cache/larder-work';
  return `${defaultCacheDir(env)}-work`;
}

/** The rows every server role shares: where blobs live, how big they may be, validation and logging. */
function parseStoreOptions(values: Record<string, string>, env: Env) {
  const maxBytes = parseSize(values['max-size']!);
  const logLevel = values['log-level']!;
  if (!isLogLevel(logLevel))
    throw new LarderError(
      'invalid_argument',
      `--log-level must be debug, info, warn, error or silent, not ${logLevel}`,
    );
  return {
    store: parseStoreSpec(values.store!, { maxBytes, env }),
    maxBlobBytes: parseSize(values['max-blob-size']!),
    validateActionResults: parseSwitch('ac-validation', values['ac-validation']!),
    logLevel,
    logFormat: parseLogFormat(values['log-format']!),
  };
}

function parseLogFormat(text: string): LogFormat {
  if (!isLogFormat(text))
    throw new LarderError('invalid_argument', `--log-format must be auto, json or text, not ${JSON.stringify(text)}`);
  return text;
}

export function resolveOptions(rows: readonly OptionRow[], args: string[], env: Env): Record<string, string> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: Object.fromEntries(
        rows.map((row) => [row.flag, { type: row.boolean ? ('boolean' as const) : ('string' as const) }]),
      ),
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new LarderError('invalid_argument', (err as Error).message);
  }
  const values: Record<string, string> = {};
  for (const row of rows) {
    const given = parsed.values[row.flag];
    if (given === true) values[row.flag] = 'on';
    else values[row.flag] = typeof given === 'string' ? given : env[row.env] || row.default(env);
  }
  return values;
}

export function optionsHelp(rows: readonly OptionRow[], env: Env): string {
  return rows
    .map(
      (row) => `  --${row.flag.padEnd(16)} ${row.help}\n  ${''.padEnd(18)} env ${row.env}, default ${row.default(env)}`,
    )
    .join('\n');
}

/** --tls-cert and --tls-key, which only make sense together. */
function parseTlsOptions(
  values: Record<string, string>,
  scheme: 'https' | 'grpcs',
): { certPath: string; keyPath: string } | null {
  const certPath = values['tls-cert']!;
  const keyPath = values['tls-key']!;
  if ((certPath === '') !== (keyPath === '')) {
    throw new LarderError(
      'invalid_argument',
      `--tls-cert and --tls-key go together: give both to serve ${scheme}://, or neither`,
    );
  }
  return certPath === '' ? null : { certPath, keyPath };
}

export function parseListen(text: string, flag = '--listen'): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new LarderError(
      'invalid_argument',
      `${flag} must be HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080), not ${JSON.stringify(text)}`,
    );
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function parseSwitch(flag: string, value: string): boolean {
  if (['on', 'true', '1', 'yes'].includes(value)) return true;
  if (['off', 'false', '0', 'no'].includes(value)) return false;
  throw new LarderError('invalid_argument', `--${flag} must be on or off, not ${JSON.stringify(value)}`);
}

/** $XDG_CACHE_HOME/larder, else ~/.cache/larder: where the disk store lives unless told otherwise. */
export function defaultCacheDir(env: Env): string {
  const base = env.XDG_CACHE_HOME || `${env.HOME || '.'}/.cache`;
  return `${base}/larder`;
}
