/**
 * What `larder executor` may download for the Remote Asset API (executor/services/fetch.ts): the allow-list of
 * hosts and URL prefixes, and the bounds of every download. Parsed once at start-up from --fetch-* flags.
 * Nothing is ever fetched with an empty allow-list.
 */
import { parseDuration } from './duration.ts';
import { LarderError } from './errors.ts';

/** One allow-list entry: a host (any http/https URL on it) or a URL prefix (URLs that start with it). */
export type AllowEntry =
  | { kind: 'host'; host: string; port: string | null; wildcard: boolean }
  | { kind: 'prefix'; prefix: string; host: string };

export interface FetchConfig {
  allow: AllowEntry[];
  /** Time to open a connection (DNS, TCP and TLS) to an upstream. */
  connectTimeoutMs: number;
  /** Time one download may take in all, redirects included; a request's own `timeout` may only shorten it. */
  timeoutMs: number;
  /** Downloads from upstreams at once, over all callers; more wait their turn. */
  concurrency: number;
}

/**
 * Parses `--fetch-allow`: comma-separated entries, each a host (`example.com`, `example.com:8443`,
 * `*.example.com`, `127.0.0.1:8000`, `[::1]:8000`) or a URL prefix (`https://example.com/releases/`).
 */
export function parseAllowList(text: string): AllowEntry[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .map(parseAllowEntry);
}

function parseAllowEntry(entry: string): AllowEntry {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new LarderError('invalid_argument', `--fetch-allow: ${JSON.stringify(entry)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new LarderError('invalid_argument', `--fetch-allow: only http:// and https:// prefixes, not ${entry}`);
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '')
      throw new LarderError(
        'invalid_argument',
        `--fetch-allow: a prefix has no credentials, query or fragment: ${entry}`,
      );
    return { kind: 'prefix', prefix: url.href, host: url.hostname };
  }
  const match = /^(\*\.)?([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/i.exec(entry);
  if (match === null)
    throw new LarderError(
      'invalid_argument',
      `--fetch-allow: ${JSON.stringify(entry)} is neither a host (example.com, *.example.com, HOST:PORT) nor an http(s) URL prefix`,
    );
  return { kind: 'host', wildcard: match[1] !== undefined, host: match[2]!.toLowerCase(), port: match[3] ?? null };
}

/** The entry that lets `url` be fetched, or null. Only http: and https: URLs are ever allowed. */
export function allowedBy(allow: readonly AllowEntry[], url: URL): AllowEntry | null {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  // Userinfo in a URL would send credentials nobody configured; refused whatever the list says.
  if (url.username !== '' || url.password !== '') return null;
  for (const entry of allow) {
    if (entry.kind === 'prefix') {
      if (url.href.startsWith(entry.prefix)) return entry;
      continue;
    }
    const host = url.hostname.toLowerCase();
    const hostMatches = entry.wildcard ? host.endsWith(`.${entry.host}`) : host === entry.host;
    if (hostMatches && (entry.port === null || entry.port === (url.port || defaultPort(url)))) return entry;
  }
  return null;
}

function defaultPort(url: URL): string {
  return url.protocol === 'https:' ? '443' : '80';
}

export function parseFetchConfig(values: Record<string, string>): FetchConfig {
  const concurrency = Number(values['fetch-concurrency']);
  if (!/^\d+$/.test(values['fetch-concurrency']!.trim()) || concurrency < 1 || concurrency > 256)
    throw new LarderError(
      'invalid_argument',
      `--fetch-concurrency must be a whole number from 1 to 256, not ${JSON.stringify(values['fetch-concurrency'])}`,
    );
  const connectTimeoutMs = parseDuration(values['fetch-connect-timeout']!, '--fetch-connect-timeout');
  const timeoutMs = parseDuration(values['fetch-timeout']!, '--fetch-timeout');
  if (connectTimeoutMs <= 0 || timeoutMs <= 0)
    throw new LarderError('invalid_argument', '--fetch-connect-timeout and --fetch-timeout must be above zero');
  return { allow: parseAllowList(values['fetch-allow']!), connectTimeoutMs, timeoutMs, concurrency };
}
