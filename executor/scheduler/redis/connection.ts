/**
 * How frontends and workers reach the fleet's Redis: `redis://` or `rediss://` (TLS) with an optional ACL user,
 * or a Sentinel-managed primary (`redis+sentinel://`, sentinel-url.ts) that may fail over to a replica; the
 * password from a file (a command line is readable by every process on the host, actions included), and
 * the CA a `rediss://` server's certificate is checked against. Everything is checked before the first connection,
 * so a wrong setting fails at start with a message saying which.
 */
import { readFile } from 'node:fs/promises';
import type { RedisOptions } from 'ioredis';
import { LarderError } from '../../../shared/errors.ts';
import { LastingErrorConnector } from './lasting-error-connector.ts';
import { isSentinelUrl, parseSentinelUrl, redactSentinelUrl } from './sentinel-url.ts';

export interface QueueConnection {
  /** redis://[USER@]HOST[:PORT][/DB] or rediss://…; a password in it works but shows wherever the URL does. */
  url: string;
  /** A file holding the password (one line; a final newline is dropped); '' or absent: the URL's, if any. */
  passwordFile?: string;
  /** PEM CA certificate(s) for a rediss:// server with a private CA; '' or absent: the system's roots. */
  caPath?: string;
}

/**
 * ioredis options for one connection: address, database, credentials and TLS, without the URL itself, and the
 * connector that opens its sockets so that no socket error can go unheard (lasting-error-connector.ts).
 */
export async function connectionOptions(connection: QueueConnection): Promise<RedisOptions> {
  if (isSentinelUrl(connection.url)) return sentinelOptions(connection);
  const url = parseQueueUrl(connection.url);
  const tls = url.protocol === 'rediss:';
  const caPath = connection.caPath ?? '';
  if (caPath !== '' && !tls)
    throw new LarderError(
      'invalid_argument',
      `--queue-ca is for a TLS connection: use rediss:// in --queue (${redactUrl(connection.url)})`,
    );
  const passwordFile = connection.passwordFile ?? '';
  if (passwordFile !== '' && url.password !== '')
    throw new LarderError(
      'invalid_argument',
      '--queue-password-file and a password in the --queue URL: give the password once, in the file',
    );
  const password = passwordFile !== '' ? await readPassword(passwordFile) : decoded(url.password);
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? 6379 : Number(url.port),
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    ...(url.username === '' ? {} : { username: decoded(url.username) }),
    ...(password === '' ? {} : { password }),
    ...(tls ? { tls: caPath === '' ? {} : { ca: await readCa(caPath) } } : {}),
    Connector: LastingErrorConnector,
  };
}

/**
 * A Sentinel-managed primary: ioredis asks the Sentinels for it, and asks again whenever its connection drops, so
 * a failover costs a reconnection, not a restart. A primary demoted while its connections stay up (a failover
 * an operator asked for) answers writes with READONLY: that reconnects too, and the command is sent again to the
 * new primary. Not ioredis's `failoverDetector`: its switch-master handler closes the connector while a
 * reconnection to the dead primary is under way, and ioredis then ends the connection for good (seen in
 * test/executor/fleet/fleet-failover.test.ts: a worker whose commands all failed "Connection is closed."). The password and ACL
 * user are the Redis servers'; the Sentinels are asked without one. ioredis's own connector opens the sockets
 * (it must, to ask the Sentinels first), and plain TCP only: TLS with Sentinels is not supported yet.
 */
async function sentinelOptions(connection: QueueConnection): Promise<RedisOptions> {
  const address = parseSentinelUrl(connection.url);
  if ((connection.caPath ?? '') !== '')
    throw new LarderError('invalid_argument', '--queue-ca is for rediss://; redis+sentinel:// connects without TLS');
  const passwordFile = connection.passwordFile ?? '';
  if (passwordFile !== '' && address.password !== '')
    throw new LarderError(
      'invalid_argument',
      '--queue-password-file and a password in the --queue URL: give the password once, in the file',
    );
  const password = passwordFile !== '' ? await readPassword(passwordFile) : decoded(address.password);
  return {
    sentinels: address.sentinels,
    name: address.master,
    db: address.db,
    reconnectOnError: (err) => err.message.includes('READONLY') && 2,
    ...(address.username === '' ? {} : { username: decoded(address.username) }),
    ...(password === '' ? {} : { password }),
  };
}

function parseQueueUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not repeated: it may hold a password.
    throw new LarderError('invalid_argument', '--queue is not a valid redis:// or rediss:// URL');
  }
  const problem =
    url.protocol !== 'redis:' && url.protocol !== 'rediss:'
      ? 'it must start redis:// or rediss:// (TLS)'
      : url.hostname === ''
        ? 'it names no host'
        : url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)
          ? 'the path must be a database number (/0)'
          : url.search !== '' || url.hash !== ''
            ? 'options after ? or # are not read; use the --queue-* flags'
            : null;
  if (problem !== null)
    throw new LarderError('invalid_argument', `--queue ${JSON.stringify(redactUrl(text))}: ${problem}`);
  return url;
}

/** A URL's user or password as typed, %-escapes undone (a stray % stays as it is). */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

async function readPassword(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new LarderError('invalid_argument', `--queue-password-file ${path}: ${(err as Error).message}`);
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '' || password.includes('\n'))
    throw new LarderError('invalid_argument', `--queue-password-file ${path} must hold the password on one line`);
  return password;
}

async function readCa(path: string): Promise<Buffer> {
  const pem = await readFile(path).catch((err: Error) =>
    Promise.reject(new LarderError('invalid_argument', `--queue-ca ${path}: ${err.message}`)),
  );
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new LarderError('invalid_argument', `--queue-ca ${path} holds no PEM certificate`);
  return pem;
}

/** The URL without its password, for logs, messages and the process title. */
export function redactUrl(url: string): string {
  if (isSentinelUrl(url)) return redactSentinelUrl(url);
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the configured URL';
  }
}
