/**
 * Bearer tokens: JWTs signed by an OpenID Connect issuer, checked with jose against the issuer's JWKS.
 * jose owns the key set: it caches it, refetches when a token names an unknown `kid` (key rotation), and
 * refuses to refetch more often than the cooldown, so a flood of forged tokens cannot hammer the IdP.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { LarderError, isLarderError } from '../errors.ts';
import type { Authenticator, Principal } from './authenticator.ts';
import { type ClaimRoleMapping, rolesFromClaims } from './claim-roles.ts';
import { checkIssuerUrl, discoverIssuer } from './discovery.ts';

export interface OidcOptions {
  /** Must equal the tokens' `iss` exactly (trailing slash included). */
  issuer: string;
  /** Accepted `aud` values: a token must carry at least one. */
  audience: string[];
  /** Skips discovery when set. */
  jwksUrl?: string;
  /** Signature algorithms accepted; asymmetric only. */
  algorithms: string[];
  /** Leeway for `exp` and `nbf`, for clocks that disagree a little. */
  clockToleranceSeconds: number;
  /** Least time between two JWKS fetches caused by unknown `kid`s. */
  jwksCooldownMs: number;
  /** Keys are refetched once they are this old, even if every `kid` is known. */
  jwksMaxAgeMs: number;
  roles: ClaimRoleMapping;
}

export const DEFAULT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

type KeyResolver = ReturnType<typeof createRemoteJWKSet>;

export function createOidcAuthenticator(options: OidcOptions): Authenticator {
  checkIssuerUrl(options.issuer, 'the OIDC issuer');
  if (options.jwksUrl !== undefined) checkIssuerUrl(options.jwksUrl, 'the JWKS URL');
  if (options.audience.length === 0 || options.audience.some((a) => a === '')) {
    throw new LarderError(
      'invalid_argument',
      'the OIDC audience must be set: without it a token minted for any other service would be accepted',
    );
  }
  for (const alg of options.algorithms) {
    // `none` carries no signature; HS* would let anyone holding the (public) JWKS forge tokens.
    if (!DEFAULT_ALGORITHMS.includes(alg)) {
      throw new LarderError(
        'invalid_argument',
        `OIDC algorithm ${alg} is not allowed; choose from ${DEFAULT_ALGORITHMS.join(', ')}`,
      );
    }
  }
  if (options.algorithms.length === 0) throw new LarderError('invalid_argument', 'the OIDC algorithm list is empty');

  const keys = lazyKeys(options);

  return {
    scheme: 'bearer',
    async authenticate(credentials) {
      if (credentials.scheme !== 'bearer') throw new LarderError('unauthenticated', 'a bearer token is required');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(credentials.token, await keys.resolver(), {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: options.algorithms,
          clockTolerance: options.clockToleranceSeconds,
          // A token that never expires is a password that can never be changed.
          requiredClaims: ['exp'],
        }));
      } catch (err) {
        throw describeFailure(err);
      }
      const principal: Principal = {
        subject: typeof payload.sub === 'string' ? payload.sub : 'unknown',
        via: 'oidc',
        roles: rolesFromClaims(options.roles, payload as Record<string, unknown>),
      };
      return principal;
    },
  };
}

/**
 * The key resolver, built on first use: discovery needs the IdP, and the edge should start (and answer
 * anonymous requests) while the IdP is briefly down. A failed discovery is retried, but not more often
 * than the JWKS cooldown, for the same reason jose has one.
 */
function lazyKeys(options: OidcOptions): { resolver(): Promise<KeyResolver> } {
  let pending: Promise<KeyResolver> | null = null;
  let failedAt = -Infinity;
  let lastFailure: unknown = null;
  const build = async (): Promise<KeyResolver> => {
    const jwksUrl = options.jwksUrl ?? (await discoverIssuer(options.issuer)).jwks_uri;
    checkIssuerUrl(jwksUrl, "the issuer's jwks_uri");
    return createRemoteJWKSet(new URL(jwksUrl), {
      cooldownDuration: options.jwksCooldownMs,
      cacheMaxAge: options.jwksMaxAgeMs,
      timeoutDuration: 5_000,
    });
  };
  return {
    resolver() {
      if (pending === null) {
        if (Date.now() - failedAt < options.jwksCooldownMs) return Promise.reject(lastFailure);
        pending = build().catch((err: unknown) => {
          pending = null;
          failedAt = Date.now();
          lastFailure = isLarderError(err)
            ? err
            : new LarderError('unavailable', `OIDC set-up failed: ${(err as Error).message}`);
          throw lastFailure;
        });
      }
      return pending;
    },
  };
}

/** A client-facing reason for a refused token: what was wrong, never the token itself. */
function describeFailure(err: unknown): LarderError {
  if (isLarderError(err)) return err;
  if (err instanceof joseErrors.JWTExpired) return new LarderError('unauthenticated', 'the token has expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return new LarderError('unauthenticated', 'the token is not valid yet');
    return new LarderError('unauthenticated', `the token's ${err.claim} claim is not accepted here`);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed)
    return new LarderError('unauthenticated', 'the token is signed with an algorithm not accepted here');
  if (err instanceof joseErrors.JWKSNoMatchingKey)
    return new LarderError('unauthenticated', 'the token is signed with a key the issuer does not publish');
  if (err instanceof joseErrors.JWKSTimeout)
    return new LarderError('unavailable', "the issuer's key set did not arrive in time");
  // A JWKS endpoint answering an error or garbage is the IdP's fault, not the client's.
  if (
    err instanceof joseErrors.JWKSInvalid ||
    (err instanceof joseErrors.JOSEError && err.code === 'ERR_JOSE_GENERIC' && /JSON Web Key Set/.test(err.message))
  ) {
    return new LarderError('unavailable', "the issuer's key set cannot be fetched");
  }
  if (err instanceof joseErrors.JOSEError)
    return new LarderError('unauthenticated', 'the token is malformed or its signature does not verify');
  // fetch failures (connection refused, DNS): the IdP is down, not the token bad.
  if (err instanceof TypeError) return new LarderError('unavailable', "the issuer's key set cannot be fetched");
  return new LarderError('unauthenticated', 'the token cannot be verified');
}
