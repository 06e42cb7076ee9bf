/**
 * The access gate: given an `Authorization` value and an operation, who is asking and may they? Both
 * transports use it: the edge with its request method, the executor with its gRPC method path.
 *
 *   no credentials       → anonymous, with the anonymous roles; lacking the role → unauthenticated
 *   bad credentials      → unauthenticated (even where anonymous would do: a client sending a stale token
 *                          must hear so, or it never refreshes it)
 *   good, lacking role   → permission_denied
 */
import { isLarderError } from '../errors.ts';
import type { Authenticator, Principal } from './authenticator.ts';
import { parseAuthorization } from './credentials.ts';
import { requiredRole, type Role } from './operations.ts';

export type Decision =
  | { allowed: true; principal: Principal }
  | {
      allowed: false;
      code: 'unauthenticated' | 'permission_denied' | 'unavailable';
      /** Safe to show the client. */
      message: string;
      /** `WWW-Authenticate` challenges for HTTP (RFC 9110 §11.6.1); empty unless unauthenticated. */
      challenges: string[];
      /** Who was refused, when known (for logs). */
      subject?: string;
    };

export interface AccessGate {
  /** False when no authenticator is configured: everyone is anonymous. */
  readonly authenticates: boolean;
  readonly anonymousRoles: ReadonlySet<Role>;
  check(authorization: string | null | undefined, operation: string): Promise<Decision>;
  /**
   * Who a request without credentials is, when anonymous may do `operation`; null when it must authenticate (then
   * `check` says why). Synchronous, for the common request of an open cache: no promise, no new object.
   */
  anonymous(operation: string): Principal | null;
  close(): void;
}

export interface AccessGateOptions {
  authenticators: Authenticator[];
  anonymousRoles: Role[];
  realm?: string;
}

export function createAccessGate(options: AccessGateOptions): AccessGate {
  const realm = (options.realm ?? 'larder').replace(/["\\]/g, '');
  const anonymousRoles: ReadonlySet<Role> = new Set(options.anonymousRoles);
  const byScheme = new Map(options.authenticators.map((a) => [a.scheme, a]));
  const challenge = (scheme: 'bearer' | 'basic', error?: string) => {
    if (scheme === 'basic') return `Basic realm="${realm}", charset="UTF-8"`;
    return error === undefined ? `Bearer realm="${realm}"` : `Bearer realm="${realm}", error="${error}"`;
  };
  const allChallenges = () => [...byScheme.keys()].map((scheme) => challenge(scheme));
  const anonymousPrincipal: Principal = { subject: 'anonymous', via: 'anonymous', roles: anonymousRoles };
  const anonymous = (operation: string) => (anonymousRoles.has(requiredRole(operation)) ? anonymousPrincipal : null);

  return {
    authenticates: byScheme.size > 0,
    anonymousRoles,
    anonymous,
    async check(authorization, operation) {
      const role = requiredRole(operation);
      const credentials = parseAuthorization(authorization);
      if (credentials.scheme === 'none') {
        if (anonymousRoles.has(role)) return { allowed: true, principal: anonymousPrincipal };
        // With nothing to authenticate against, asking for credentials would be a promise no client can keep.
        if (byScheme.size === 0)
          return { allowed: false, code: 'permission_denied', message: `nobody may ${role} here`, challenges: [] };
        return {
          allowed: false,
          code: 'unauthenticated',
          message: `credentials are required to ${role}`,
          challenges: allChallenges(),
        };
      }
      const authenticator = credentials.scheme === 'malformed' ? undefined : byScheme.get(credentials.scheme);
      if (authenticator === undefined || credentials.scheme === 'malformed') {
        const message =
          credentials.scheme === 'malformed'
            ? credentials.reason
            : `${credentials.scheme} credentials are not accepted here`;
        return { allowed: false, code: 'unauthenticated', message, challenges: allChallenges() };
      }
      let principal: Principal;
      try {
        principal = await authenticator.authenticate(credentials);
      } catch (err) {
        if (isLarderError(err, 'unavailable'))
          return { allowed: false, code: 'unavailable', message: err.message, challenges: [] };
        if (!isLarderError(err, 'unauthenticated')) throw err;
        // RFC 6750 §3.1: invalid_token tells the client (Bazel) to get a fresh token and try again.
        const challenges = [
          challenge(authenticator.scheme, authenticator.scheme === 'bearer' ? 'invalid_token' : undefined),
        ];
        for (const other of byScheme.keys()) if (other !== authenticator.scheme) challenges.push(challenge(other));
        return { allowed: false, code: 'unauthenticated', message: err.message, challenges };
      }
      const roles = new Set([...principal.roles, ...anonymousRoles]);
      if (!roles.has(role)) {
        return {
          allowed: false,
          code: 'permission_denied',
          message: `${principal.subject} may not ${role}`,
          challenges: [],
          subject: principal.subject,
        };
      }
      return { allowed: true, principal: { ...principal, roles } };
    },
    close() {
      for (const authenticator of byScheme.values()) authenticator.close?.();
    },
  };
}
