/**
 * Parsing an `Authorization` value (an HTTP header or gRPC `authorization` metadata) into the credentials
 * it carries. Pure and transport-neutral; nothing here decides whether the credentials are any good.
 */
export type Credentials =
  | { scheme: 'none' }
  | { scheme: 'bearer'; token: string }
  | { scheme: 'basic'; user: string; password: string }
  /** A scheme larder does not speak, or a Basic value that does not decode: refused, never ignored. */
  | { scheme: 'malformed'; reason: string };

export function parseAuthorization(value: string | null | undefined): Credentials {
  if (value === null || value === undefined || value.trim() === '') return { scheme: 'none' };
  const match = /^\s*([A-Za-z][A-Za-z0-9._~+-]*)\s+(\S+)\s*$/.exec(value);
  if (!match) return { scheme: 'malformed', reason: 'the Authorization value is not "SCHEME CREDENTIALS"' };
  const scheme = match[1]!.toLowerCase();
  const payload = match[2]!;
  if (scheme === 'bearer') return { scheme: 'bearer', token: payload };
  if (scheme === 'basic') return parseBasic(payload);
  return { scheme: 'malformed', reason: `unsupported authorization scheme ${match[1]}` };
}

/**
 * Basic credentials are base64 of `user:password`. Bazel encodes URL user-info credentials with the
 * base64url alphabet instead of the standard one, so both are accepted (they differ only in `-_` vs `+/`
 * and in optional padding, which makes the mapping unambiguous).
 */
function parseBasic(payload: string): Credentials {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(payload))
    return { scheme: 'malformed', reason: 'Basic credentials are not base64' };
  const standard = payload.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  const padded = standard + '='.repeat((4 - (standard.length % 4)) % 4);
  let text: string;
  try {
    const binary = atob(padded);
    text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0)));
  } catch {
    return { scheme: 'malformed', reason: 'Basic credentials do not decode' };
  }
  const colon = text.indexOf(':');
  if (colon <= 0) return { scheme: 'malformed', reason: 'Basic credentials are not "user:password"' };
  return { scheme: 'basic', user: text.slice(0, colon), password: text.slice(colon + 1) };
}
