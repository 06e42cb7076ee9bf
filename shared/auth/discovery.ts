/**
 * OpenID Connect discovery: the issuer's `/.well-known/openid-configuration`, from which the edge takes the
 * JWKS URL and the credential helper the device-authorization and token endpoints. Runtime-neutral (fetch).
 */
import { LarderError } from '../errors.ts';

export interface IssuerMetadata {
  issuer: string;
  jwks_uri: string;
  token_endpoint?: string;
  device_authorization_endpoint?: string;
}

/**
 * An issuer must be https, except on loopback (tests, and a local IdP): tokens and the keys that verify
 * them must not travel in clear text.
 */
export function checkIssuerUrl(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new LarderError('invalid_argument', `${what} must be a URL, not ${JSON.stringify(text)}`);
  }
  const loopback =
    url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new LarderError(
      'invalid_argument',
      `${what} must be an https:// URL (plain http only on loopback), not ${text}`,
    );
  }
  return url;
}

export async function discoverIssuer(issuer: string, options: { timeoutMs?: number } = {}): Promise<IssuerMetadata> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 5_000), redirect: 'error' });
  } catch (err) {
    throw new LarderError('unavailable', `OIDC discovery at ${url} failed: ${(err as Error).message}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new LarderError('unavailable', `OIDC discovery at ${url} answered ${response.status}`);
  }
  const doc = (await response.json().catch(() => null)) as Partial<IssuerMetadata> | null;
  if (doc === null || typeof doc.jwks_uri !== 'string') {
    throw new LarderError('unavailable', `OIDC discovery at ${url} did not return a document with jwks_uri`);
  }
  // OpenID Connect Discovery §4.3: the document must name exactly the issuer it was fetched for, or an
  // attacker who controls one path of a shared host could vouch for another issuer.
  if (doc.issuer !== issuer) {
    throw new LarderError(
      'unavailable',
      `OIDC discovery at ${url} names issuer ${JSON.stringify(doc.issuer)}, not ${JSON.stringify(issuer)}`,
    );
  }
  return doc as IssuerMetadata;
}
