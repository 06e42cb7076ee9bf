/**
 * Remote Asset qualifiers, parsed once at the boundary. larder knows the ones Bazel sends
 * (`checksum.sri`, `bazel.canonical_id`, `http_header:NAME`, `http_header_url:INDEX:NAME`); any other name is
 * refused with INVALID_ARGUMENT naming it, as the API asks of a server that cannot honour a qualifier.
 */
import { LarderError } from '../../../shared/errors.ts';
import type { Qualifier } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';

export type SriAlgorithm = 'sha256' | 'sha384' | 'sha512';

/** A `checksum.sri` value: the algorithm and the expected digest as lowercase hex. */
export interface Checksum {
  algorithm: SriAlgorithm;
  hex: string;
  /** As the client spelled it, for messages and record keys. */
  sri: string;
}

export interface Qualifiers {
  checksum: Checksum | null;
  canonicalId: string | null;
  /** Headers sent to every URI (`http_header:NAME`). */
  headers: Map<string, string>;
  /** Headers sent to one URI only (`http_header_url:INDEX:NAME`), by its index in the request. */
  headersPerUri: Map<number, Map<string, string>>;
  /** The qualifiers that say which content is meant (not how to download it), sorted: part of a record's key. */
  identity: Array<[string, string]>;
}

const DIGEST_BYTES: Record<SriAlgorithm, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** Bigger than any real header; a request carrying more is refused rather than forwarded. */
export const MAX_HEADER_BYTES = 8 * 1024;
const MAX_HEADERS = 64;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers that say where or how the request travels: the server sets them, a client may not. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'upgrade',
  'keep-alive',
  'proxy-authorization',
  'accept-encoding',
]);

export function parseQualifiers(qualifiers: readonly Qualifier[], uriCount: number): Qualifiers {
  const parsed: Qualifiers = {
    checksum: null,
    canonicalId: null,
    headers: new Map(),
    headersPerUri: new Map(),
    identity: [],
  };
  const seen = new Set<string>();
  const unknown: string[] = [];
  let headerCount = 0;
  for (const { name, value } of qualifiers) {
    if (seen.has(name)) throw new LarderError('invalid_argument', `qualifier ${JSON.stringify(name)} appears twice`);
    seen.add(name);
    if (name === 'checksum.sri') {
      parsed.checksum = parseSri(value);
      parsed.identity.push([name, value]);
    } else if (name === 'bazel.canonical_id') {
      parsed.canonicalId = value;
      parsed.identity.push([name, value]);
    } else if (name.startsWith('http_header:')) {
      headerCount++;
      parsed.headers.set(headerName(name.slice('http_header:'.length), name), headerValue(value, name));
    } else if (name.startsWith('http_header_url:')) {
      headerCount++;
      const match = /^http_header_url:(\d+):(.*)$/.exec(name);
      const index = Number(match?.[1]);
      if (match === null || index >= uriCount)
        throw new LarderError(
          'invalid_argument',
          `qualifier ${JSON.stringify(name)}: expected http_header_url:INDEX:NAME with INDEX below ${uriCount}`,
        );
      const perUri = parsed.headersPerUri.get(index) ?? new Map<string, string>();
      perUri.set(headerName(match[2]!, name), headerValue(value, name));
      parsed.headersPerUri.set(index, perUri);
    } else {
      unknown.push(name);
    }
  }
  if (unknown.length > 0)
    throw new LarderError(
      'invalid_argument',
      `unsupported qualifiers: ${unknown.map((n) => JSON.stringify(n)).join(', ')} (larder knows checksum.sri, bazel.canonical_id, http_header:NAME and http_header_url:INDEX:NAME)`,
    );
  if (headerCount > MAX_HEADERS)
    throw new LarderError('invalid_argument', `${headerCount} header qualifiers: at most ${MAX_HEADERS}`);
  parsed.identity.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return parsed;
}

/** Parses one Subresource Integrity value (`sha256-BASE64`); several alternatives are not accepted. */
export function parseSri(value: string): Checksum {
  const match = /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})$/.exec(value.trim());
  const algorithm = match?.[1] as SriAlgorithm | undefined;
  let hex = '';
  if (match !== null && algorithm !== undefined) {
    try {
      hex = Buffer.from(atob(match[2]!), 'latin1').toString('hex');
    } catch {
      hex = '';
    }
  }
  if (algorithm === undefined || hex.length !== DIGEST_BYTES[algorithm] * 2)
    throw new LarderError(
      'invalid_argument',
      `checksum.sri: expected sha256-, sha384- or sha512- followed by the base64 digest, not ${JSON.stringify(value.slice(0, 120))}`,
    );
  return { algorithm, hex, sri: `${algorithm}-${Buffer.from(hex, 'hex').toString('base64')}` };
}

function headerName(name: string, qualifier: string): string {
  if (!HEADER_NAME.test(name))
    throw new LarderError('invalid_argument', `qualifier ${JSON.stringify(qualifier)}: not a valid header name`);
  if (RESERVED_HEADERS.has(name.toLowerCase()))
    throw new LarderError('invalid_argument', `qualifier ${JSON.stringify(qualifier)}: larder sets ${name} itself`);
  return name.toLowerCase();
}

function headerValue(value: string, qualifier: string): string {
  if (value.length > MAX_HEADER_BYTES)
    throw new LarderError(
      'invalid_argument',
      `qualifier ${JSON.stringify(qualifier.slice(0, 80))}: a header value of ${value.length} bytes (at most ${MAX_HEADER_BYTES})`,
    );
  if (/[\r\n\0]/.test(value))
    throw new LarderError('invalid_argument', `qualifier ${JSON.stringify(qualifier)}: a line break in a header value`);
  return value;
}
