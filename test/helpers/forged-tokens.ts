/**
 * Tokens an honest IdP never mints, made with jose for tests: expired, not yet valid, for the wrong issuer,
 * signed by a key nobody publishes, unsigned (`alg: none`), and HS256 "signed" with the issuer's public key
 * (the classic algorithm-confusion forgery).
 */
import { SignJWT, UnsecuredJWT, exportSPKI, generateKeyPair, importJWK, type JWTPayload } from 'jose';
import type { SigningKey } from './oidc-idp.ts';

export interface Claims {
  iss: string;
  aud: string;
  sub?: string;
  groups?: string[];
  /** Seconds from now. */
  expIn?: number;
  nbfIn?: number;
}

function payload(claims: Claims): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: claims.iss,
    aud: claims.aud,
    sub: claims.sub ?? 'forger',
    groups: claims.groups ?? ['ci'],
    iat: now,
    exp: now + (claims.expIn ?? 300),
    ...(claims.nbfIn === undefined ? {} : { nbf: now + claims.nbfIn }),
  };
}

/** Signed with `key` (the IdP's own key, when testing claim checks), under its kid. */
export function signWith(key: SigningKey, claims: Claims): Promise<string> {
  return new SignJWT(payload(claims))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
    .sign(key.privateKey);
}

/** Signed by a fresh key the issuer never published. */
export async function signWithUnknownKey(claims: Claims): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT(payload(claims)).setProtectedHeader({ alg: 'ES256', kid: 'not-published' }).sign(privateKey);
}

export function unsigned(claims: Claims): string {
  return new UnsecuredJWT(payload(claims)).encode();
}

/** HS256 with the issuer's public key (as PEM, the form a confused verifier would use) as the HMAC secret. */
export async function hs256WithPublicKey(key: SigningKey, claims: Claims): Promise<string> {
  const publicKey = await importJWK(key.publicJwk, 'ES256', { extractable: true });
  const pem = await exportSPKI(publicKey as CryptoKey);
  return new SignJWT(payload(claims))
    .setProtectedHeader({ alg: 'HS256', kid: key.kid })
    .sign(new TextEncoder().encode(pem));
}
