/**
 * `larder edge`'s options, and the ones every server role shares with it: where blobs live, logging,
 * authentication. Each is one row of an option table (options.ts), checked once at start-up. The executor's and the
 * worker's tables (executor/config/) take the shared rows as they are, so one config file and one environment
 * configure every role alike.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type AuthConfig, parseAuthConfig } from './auth/config.ts';
import { parseDuration } from './duration.ts';
import { LarderError } from './errors.ts';
import type { LogFormat, LogLevel } from './log-options.ts';
import { type Env, type OptionRow, parseLogFormat, parseLogLevel, parseSwitch, resolveOptions } from './options.ts';
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

/** Where blobs live and how big they may be: the store rows of every server role. */
export const STORE_OPTIONS: readonly OptionRow[] = [
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
];

export const LOG_OPTIONS: readonly OptionRow[] = [
  { flag: 'log-level', env: 'LARDER_LOG_LEVEL', help: 'debug, info, warn, error or silent', default: () => 'info' },
  {
    flag: 'log-format',
    env: 'LARDER_LOG_FORMAT',
    help: 'json (one object per line), text, or auto: text when stdout is a terminal, else json',
    default: () => 'auto',
  },
];

/** The options that configure authentication; every server role takes all of them, parsed by parseAuthOptions. */
export const AUTH_OPTIONS: readonly OptionRow[] = [
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
];

export const EDGE_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'listen',
    env: 'LARDER_LISTEN',
    help: 'address to serve HTTP on, HOST:PORT (port 0 picks a free one)',
    default: () => '127.0.0.1:8080',
  },
  ...STORE_OPTIONS,
  ...LOG_OPTIONS,
  ...AUTH_OPTIONS,
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

/** The AUTH_OPTIONS rows and the config file they point at, for every server role alike. */
export function parseAuthOptions(values: Record<string, string>): AuthConfig {
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

/** The rows every server role shares: where blobs live, how big they may be, validation and logging. */
export function parseStoreOptions(values: Record<string, string>, env: Env) {
  const maxBytes = parseSize(values['max-size']!);
  const logLevel = parseLogLevel(values['log-level']!);
  return {
    store: parseStoreSpec(values.store!, { maxBytes, env }),
    maxBlobBytes: parseSize(values['max-blob-size']!),
    validateActionResults: parseSwitch('ac-validation', values['ac-validation']!),
    logLevel,
    logFormat: parseLogFormat(values['log-format']!),
  };
}

/** --tls-cert and --tls-key, which only make sense together. */
export function parseTlsOptions(
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

/** $XDG_CACHE_HOME/larder, else ~/.cache/larder: where the disk store lives unless told otherwise. */
export function defaultCacheDir(env: Env): string {
  const base = env.XDG_CACHE_HOME || `${env.HOME || '.'}/.cache`;
  return `${base}/larder`;
}
