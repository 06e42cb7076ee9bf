/**
 * Command-line flags and their environment twins, checked once at start-up. Every option has one row in
 * OPTIONS: its flag, its LARDER_* variable, its default and its help text; `--help` and the README's
 * configuration reference are written from the same rows. A flag beats its variable, which beats the default.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type AuthConfig, parseAuthConfig } from './auth/config.ts';
import { parseDuration } from './duration.ts';
import { LarderError } from './errors.ts';
import { isLogLevel, type LogLevel } from './log.ts';
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
  auth: AuthConfig;
  /** PEM files to serve https:// with; null serves plain http://. */
  tls: { certPath: string; keyPath: string } | null;
  /** A connection that sends and receives nothing for this long is closed; there is no overall request deadline. */
  idleTimeoutMs: number;
  /** Open connections at most; null: derived from the file-descriptor limit (edge/connections.ts). */
  maxConnections: number | null;
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
  /** The edge's authenticators, anonymous roles and --allow-anonymous, from the same rows. */
  auth: AuthConfig;
  /** PEM files to serve grpcs:// with; null serves plaintext grpc://. */
  tls: { certPath: string; keyPath: string } | null;
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
  { flag: 'listen', env: 'LARDER_LISTEN', help: 'address to serve HTTP on, HOST:PORT (port 0 picks a free one)', default: () => '127.0.0.1:8080' },
  { flag: 'store', env: 'LARDER_STORE', help: 'where blobs live: disk:PATH[@SIZE], memory[:SIZE], s3://BUCKET/PREFIX or tiered(FRONT,…,BACK)', default: (env) => `disk:${defaultCacheDir(env)}` },
  { flag: 'max-size', env: 'LARDER_MAX_SIZE', help: 'size budget of the store; least recently used blobs are evicted past it', default: () => '10GiB' },
  { flag: 'max-blob-size', env: 'LARDER_MAX_BLOB_SIZE', help: 'largest single blob accepted (HTTP 413, gRPC INVALID_ARGUMENT above it)', default: () => '4GiB' },
  { flag: 'ac-validation', env: 'LARDER_AC_VALIDATION', help: 'on: an action-cache entry whose outputs are gone from the CAS is a miss', default: () => 'on' },
  { flag: 'log-level', env: 'LARDER_LOG_LEVEL', help: 'debug, info, warn, error or silent', default: () => 'info' },
  { flag: 'config', env: 'LARDER_CONFIG', help: 'JSON config file: role mappings, anonymous roles, OIDC and htpasswd details', default: () => '' },
  { flag: 'oidc-issuer', env: 'LARDER_OIDC_ISSUER', help: 'accept bearer JWTs from this OpenID Connect issuer (its exact iss)', default: () => '' },
  { flag: 'oidc-audience', env: 'LARDER_OIDC_AUDIENCE', help: "the aud the issuer's tokens must carry for this cache", default: () => '' },
  { flag: 'htpasswd', env: 'LARDER_HTPASSWD', help: 'accept HTTP Basic users from this htpasswd file (bcrypt or {SHA}; reloaded on change)', default: () => '' },
  { flag: 'allow-anonymous', env: 'LARDER_ALLOW_ANONYMOUS', help: 'allow serving beyond loopback without any authenticator', default: () => 'off', boolean: true },
  { flag: 'tls-cert', env: 'LARDER_TLS_CERT', help: 'PEM certificate chain; with --tls-key, serve https://', default: () => '' },
  { flag: 'tls-key', env: 'LARDER_TLS_KEY', help: 'PEM private key for --tls-cert', default: () => '' },
  { flag: 'idle-timeout', env: 'LARDER_IDLE_TIMEOUT', help: 'close a connection idle (no bytes either way) this long; uploads that keep moving have no deadline', default: () => '90s' },
  { flag: 'max-connections', env: 'LARDER_MAX_CONNECTIONS', help: 'open connections at most (auto: from the open-file limit); more are refused', default: () => 'auto' },
];

/** Parses `larder edge` arguments (without the subcommand) and the environment into a checked config. */
export function parseEdgeConfig(args: string[], env: Env): EdgeConfig {
  const values = resolveOptions(EDGE_OPTIONS, args, env);
  return {
    listen: parseListen(values.listen!),
    ...parseStoreOptions(values, env),
    auth: parseAuthOptions(values),
    tls: parseTlsOptions(values, 'https'),
    ...parseConnectionOptions(values),
  };
}

function parseConnectionOptions(values: Record<string, string>): Pick<EdgeConfig, 'idleTimeoutMs' | 'maxConnections'> {
  const idleTimeoutMs = parseDuration(values['idle-timeout']!, '--idle-timeout');
  if (idleTimeoutMs < 1000) throw new LarderError('invalid_argument', '--idle-timeout must be at least 1s');
  const max = values['max-connections']!;
  if (max === 'auto') return { idleTimeoutMs, maxConnections: null };
  if (!/^\d+$/.test(max) || Number(max) < 1) throw new LarderError('invalid_argument', `--max-connections must be auto or a positive number, not ${JSON.stringify(max)}`);
  return { idleTimeoutMs, maxConnections: Number(max) };
}

/** The AUTH_FLAGS rows and the config file they point at, for every server role alike. */
function parseAuthOptions(values: Record<string, string>): AuthConfig {
  return parseAuthConfig(readConfigFile(values.config!), {
    oidcIssuer: values['oidc-issuer']!,
    oidcAudience: values['oidc-audience']!,
    htpasswd: values.htpasswd!,
    allowAnonymous: parseSwitch('allow-anonymous', values['allow-anonymous']!),
  });
}

/** The parsed JSON of `--config FILE`, or null without one. */
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
const AUTH_FLAGS = ['config', 'oidc-issuer', 'oidc-audience', 'htpasswd', 'allow-anonymous'];

/**
 * The executor shares the edge's store, size, validation, logging and authentication rows (same flags, same
 * LARDER_* twins), so one config file and one environment configure both.
 */
export const EXECUTOR_OPTIONS: readonly OptionRow[] = [
  { flag: 'listen', env: 'LARDER_EXECUTOR_LISTEN', help: 'address to serve gRPC on, HOST:PORT (port 0 picks a free one)', default: () => '127.0.0.1:8980' },
  ...EDGE_OPTIONS.filter((row) => ['store', 'max-size', 'max-blob-size', 'ac-validation', 'log-level', ...AUTH_FLAGS].includes(row.flag)),
  { flag: 'max-batch-size', env: 'LARDER_MAX_BATCH_SIZE', help: 'summed blob bytes one BatchUpdateBlobs/BatchReadBlobs call may carry', default: () => '4MiB' },
  { flag: 'tls-cert', env: 'LARDER_TLS_CERT', help: 'PEM certificate chain; with --tls-key, serve grpcs://', default: () => '' },
  { flag: 'tls-key', env: 'LARDER_TLS_KEY', help: 'PEM private key for --tls-cert', default: () => '' },
];

/** Parses `larder executor` arguments (without the subcommand) and the environment into a checked config. */
export function parseExecutorConfig(args: string[], env: Env): ExecutorConfig {
  const values = resolveOptions(EXECUTOR_OPTIONS, args, env);
  return {
    listen: parseListen(values.listen!),
    ...parseStoreOptions(values, env),
    maxBatchBytes: parseSize(values['max-batch-size']!),
    auth: parseAuthOptions(values),
    tls: parseTlsOptions(values, 'grpcs'),
  };
}

/** The rows every server role shares: where blobs live, how big they may be, validation and logging. */
function parseStoreOptions(values: Record<string, string>, env: Env) {
  const maxBytes = parseSize(values['max-size']!);
  const logLevel = values['log-level']!;
  if (!isLogLevel(logLevel)) throw new LarderError('invalid_argument', `--log-level must be debug, info, warn, error or silent, not ${logLevel}`);
  return {
    store: parseStoreSpec(values.store!, { maxBytes, env }),
    maxBlobBytes: parseSize(values['max-blob-size']!),
    validateActionResults: parseSwitch('ac-validation', values['ac-validation']!),
    logLevel,
  };
}

export function resolveOptions(rows: readonly OptionRow[], args: string[], env: Env): Record<string, string> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: Object.fromEntries(rows.map((row) => [row.flag, { type: row.boolean ? ('boolean' as const) : ('string' as const) }])),
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
    else values[row.flag] = typeof given === 'string' ? given : (env[row.env] || row.default(env));
  }
  return values;
}

export function optionsHelp(rows: readonly OptionRow[], env: Env): string {
  return rows.map((row) => `  --${row.flag.padEnd(16)} ${row.help}\n  ${''.padEnd(18)} env ${row.env}, default ${row.default(env)}`).join('\n');
}

/** --tls-cert and --tls-key, which only make sense together. */
function parseTlsOptions(values: Record<string, string>, scheme: 'https' | 'grpcs'): { certPath: string; keyPath: string } | null {
  const certPath = values['tls-cert']!;
  const keyPath = values['tls-key']!;
  if ((certPath === '') !== (keyPath === '')) {
    throw new LarderError('invalid_argument', `--tls-cert and --tls-key go together: give both to serve ${scheme}://, or neither`);
  }
  return certPath === '' ? null : { certPath, keyPath };
}

export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new LarderError('invalid_argument', `--listen must be HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080), not ${JSON.stringify(text)}`);
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
