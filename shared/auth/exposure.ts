/**
 * What a server may do beyond loopback, the same for the HTTP edge and the gRPC executor. An Internet-facing
 * cache that anyone may write is a cache anyone may poison, so serving there without an authenticator must
 * be asked for by name (--allow-anonymous). Credentials in clear text only earn a warning: a TLS-terminating
 * proxy in front is a common and sound set-up.
 */
import { isLoopback } from '../config.ts';
import { LarderError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { AuthConfig } from './config.ts';

export interface Exposure {
  host: string;
  auth: AuthConfig;
  /** Whether the server itself terminates TLS (--tls-cert/--tls-key). */
  tls: boolean;
  /** The clear-text protocol it speaks otherwise, for the warning: `http` or `grpc`. */
  plainProtocol: string;
}

/** Throws `invalid_argument` for an unauthenticated server beyond loopback unless allowed; warns otherwise. */
export function checkExposure(exposure: Exposure, log: Logger): void {
  const { host, auth } = exposure;
  if (isLoopback(host)) return;
  const authenticates = auth.oidc !== null || auth.htpasswd !== null;
  if (!authenticates && !auth.allowAnonymous) {
    throw new LarderError(
      'invalid_argument',
      `refusing to serve on ${host}, beyond loopback, without authentication: configure --oidc-issuer or --htpasswd, or pass --allow-anonymous if anyone who can reach it may use the cache`,
    );
  }
  if (!authenticates) {
    log.warn(
      `listening on ${host}, beyond loopback, with no authentication (--allow-anonymous): anyone who can reach it can ${auth.anonymous.join(', ') || 'do nothing'}`,
    );
  } else if (!exposure.tls) {
    log.warn(
      `listening on ${host} over plain ${exposure.plainProtocol}: tokens and passwords travel in clear text unless a TLS proxy is in front (--tls-cert/--tls-key)`,
    );
  }
}
