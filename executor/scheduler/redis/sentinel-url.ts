/**
 * A Sentinel-managed Redis as one `--queue` value: `redis+sentinel://[USER@]HOST[:PORT][,HOST[:PORT]…]/MASTER[/DB]`.
 * The hosts are Sentinels (port 26379 when none is given), MASTER the name they monitor the primary under. The
 * WHATWG URL parser refuses a list of hosts, so the value is taken apart here. Clients ask the Sentinels which
 * server is the primary, and ask again when it fails over.
 */
import { LarderError } from '../../../shared/errors.ts';

export const SENTINEL_SCHEME = 'redis+sentinel://';

export interface SentinelAddress {
  /** The Sentinels, in the order given: each is asked in turn. */
  sentinels: Array<{ host: string; port: number }>;
  /** The name the Sentinels know the primary by (`sentinel monitor NAME …`). */
  master: string;
  db: number;
  /** As typed in the URL (%-escapes not undone); '' when absent. */
  username: string;
  password: string;
}

export function isSentinelUrl(text: string): boolean {
  return text.startsWith(SENTINEL_SCHEME);
}

export function parseSentinelUrl(text: string): SentinelAddress {
  const rest = text.slice(SENTINEL_SCHEME.length);
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash + 1);
  const at = authority.lastIndexOf('@');
  const [username = '', password = ''] = at === -1 ? [] : splitOnce(authority.slice(0, at), ':');
  const hosts = (at === -1 ? authority : authority.slice(at + 1)).split(',');
  const fail = (problem: string): never => {
    // Not repeated whole: it may hold a password.
    throw new LarderError('invalid_argument', `--queue ${JSON.stringify(redactSentinelUrl(text))}: ${problem}`);
  };
  if (text.includes('?') || text.includes('#')) fail('options after ? or # are not read; use the --queue-* flags');
  const sentinels = hosts.map((host) => sentinelHost(host) ?? fail(`${JSON.stringify(host)} is not HOST[:PORT]`));
  const match = /^([A-Za-z0-9._-]+)(?:\/(\d+))?$/.exec(path);
  if (match === null)
    fail('the path must be /MASTER or /MASTER/DB (the name the Sentinels monitor, a database number)');
  return {
    sentinels,
    master: match![1]!,
    db: match![2] === undefined ? 0 : Number(match![2]),
    username,
    password,
  };
}

/** The value without its password, for logs and messages. */
export function redactSentinelUrl(text: string): string {
  return text.replace(/^(redis\+sentinel:\/\/[^:@/]*:)[^@/]*@/, '$1***@');
}

function sentinelHost(text: string): { host: string; port: number } | null {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(text);
  if (match === null) return null;
  const port = match[2] === undefined ? 26379 : Number(match[2]);
  if (port < 1 || port > 65535) return null;
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

function splitOnce(text: string, separator: string): [string, string] {
  const i = text.indexOf(separator);
  return i === -1 ? [text, ''] : [text.slice(0, i), text.slice(i + 1)];
}
