/**
 * Downloads one asset from its origin for FetchBlob, under the operator's bounds: only allow-listed URLs
 * (redirects too), no loopback or private address unless the allow-list names it, connect and total
 * timeouts, at most `maxBytes`, a response header of at most 16 KiB. The bytes are spooled to a temporary
 * file while SHA-256 (and the checksum's own algorithm) is computed, so nothing reaches the store before the
 * checksum is known to match.
 *
 * node:http rather than fetch (undici): its `lookup` hook sees every address a name resolves to right before
 * the connection is made (so a private address cannot slip in between a check and the connect), redirects are
 * never followed on their own, and the response header size has a plain bound (`maxHeaderSize`).
 */
import { createHash, type Hash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AllowEntry, allowedBy } from '../../../shared/fetch-config.ts';
import { LarderError } from '../../../shared/errors.ts';
import { allowsSpecialAddresses, isSpecialAddress } from './addresses.ts';
import type { Checksum } from './qualifiers.ts';

export interface DownloadLimits {
  allow: readonly AllowEntry[];
  connectTimeoutMs: number;
  maxBytes: number;
}

/** A download spooled to disk; `discard` removes it (the caller stores it first, or not at all). */
export interface Download {
  path: string;
  size: number;
  sha256: string;
  discard(): Promise<void>;
}

const MAX_REDIRECTS = 5;
const MAX_RESPONSE_HEADER_BYTES = 16 * 1024;

/**
 * Downloads `uri`, following allow-listed redirects. Throws LarderError: permission_denied (not allowed,
 * or refused upstream), not_found, too_large, digest_mismatch (checksum), timeout, unavailable.
 */
export async function download(
  uri: string,
  options: { headers: Map<string, string>; checksum: Checksum | null; limits: DownloadLimits; signal: AbortSignal },
): Promise<Download> {
  let url = new URL(uri);
  let headers = options.headers;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const entry = allowedBy(options.limits.allow, url);
    if (entry === null)
      throw new LarderError('permission_denied', `${redact(url)} is not on this server's --fetch-allow list`);
    const response = await request(url, headers, entry, options.limits, options.signal);
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location !== undefined) {
      response.resume();
      const next = new URL(response.headers.location, url);
      // Credentials meant for one origin are not handed to another.
      if (next.origin !== url.origin) headers = new Map();
      url = next;
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw new LarderError(upstreamCode(status), `${redact(url)} answered HTTP ${status}`);
    }
    return spool(response, url, options.checksum, options.limits.maxBytes, options.signal);
  }
  throw new LarderError('unavailable', `${redact(new URL(uri))}: more than ${MAX_REDIRECTS} redirects`);
}

function upstreamCode(status: number) {
  if (status === 404 || status === 410) return 'not_found' as const;
  if (status === 401 || status === 403) return 'permission_denied' as const;
  return 'unavailable' as const;
}

/** A URL for messages: no query string (it may carry a signature or token). */
function redact(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function request(
  url: URL,
  headers: Map<string, string>,
  entry: AllowEntry,
  limits: DownloadLimits,
  signal: AbortSignal,
): Promise<http.IncomingMessage> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const special = !allowsSpecialAddresses(entry);
  if (special && isIP(host) !== 0 && isSpecialAddress(host))
    return Promise.reject(
      new LarderError('permission_denied', `${redact(url)}: ${host} is a loopback or private address`),
    );
  const lookup: LookupFunction = (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const refused = special ? addresses.find((a) => isSpecialAddress(a.address)) : undefined;
      if (refused !== undefined)
        return callback(
          new LarderError(
            'permission_denied',
            `${hostname} resolves to ${refused.address}, a loopback or private address`,
          ),
          '',
          0,
        );
      if (lookupOptions.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, {
      method: 'GET',
      headers: { 'user-agent': 'larder', 'accept-encoding': 'identity', ...Object.fromEntries(headers) },
      lookup,
      signal,
      maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
      agent: false,
    });
    const connectTimer = setTimeout(() => {
      req.destroy(new LarderError('timeout', `${redact(url)}: no connection within ${limits.connectTimeoutMs} ms`));
    }, limits.connectTimeoutMs);
    req.on('socket', (socket) => {
      socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
    });
    req.on('response', (response) => {
      clearTimeout(connectTimer);
      resolve(response);
    });
    req.on('error', (err) => {
      clearTimeout(connectTimer);
      reject(requestError(err, url, signal));
    });
    req.end();
  });
}

function requestError(err: Error, url: URL, signal: AbortSignal): LarderError {
  if (err instanceof LarderError) return err;
  if (signal.aborted) return new LarderError('timeout', `${redact(url)}: the download did not finish in time`);
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'HPE_HEADER_OVERFLOW')
    return new LarderError('unavailable', `${redact(url)}: response headers over ${MAX_RESPONSE_HEADER_BYTES} bytes`);
  return new LarderError('unavailable', `${redact(url)}: ${err.message}`);
}

/** Writes the body to a temporary file, hashing as it goes; the file is removed on any failure. */
async function spool(
  response: http.IncomingMessage,
  url: URL,
  checksum: Checksum | null,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Download> {
  const declared = Number(response.headers['content-length'] ?? Number.NaN);
  if (declared > maxBytes) {
    response.destroy();
    throw new LarderError('too_large', `${redact(url)} is ${declared} bytes, over the ${maxBytes}-byte blob limit`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'larder-fetch-'));
  const discard = () => rm(dir, { recursive: true, force: true });
  const path = join(dir, 'blob');
  const sha256 = createHash('sha256');
  const verify: Hash | null =
    checksum === null || checksum.algorithm === 'sha256' ? null : createHash(checksum.algorithm);
  let size = 0;
  try {
    const out = createWriteStream(path, { flush: true });
    try {
      for await (const chunk of response as AsyncIterable<Buffer>) {
        size += chunk.byteLength;
        if (size > maxBytes)
          throw new LarderError('too_large', `${redact(url)} sent more than the ${maxBytes}-byte blob limit`);
        sha256.update(chunk);
        verify?.update(chunk);
        if (!out.write(chunk)) await new Promise((resolve) => out.once('drain', resolve));
      }
    } finally {
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }
    if (signal.aborted) throw new LarderError('timeout', `${redact(url)}: the download did not finish in time`);
    const hex = sha256.digest('hex');
    if (checksum !== null) {
      const actual = verify === null ? hex : verify.digest('hex');
      if (actual !== checksum.hex)
        throw new LarderError(
          'digest_mismatch',
          `${redact(url)}: checksum mismatch: expected ${checksum.sri}, got ${checksum.algorithm}-${Buffer.from(actual, 'hex').toString('base64')}`,
        );
    }
    return { path, size, sha256: hex, discard };
  } catch (err) {
    response.destroy();
    await discard();
    throw err instanceof LarderError ? err : requestError(err as Error, url, signal);
  }
}
