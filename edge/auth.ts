/**
 * The edge's authentication middleware: asks the access gate whether this request's credentials allow its
 * method, and answers 401 (with `WWW-Authenticate` challenges) or 403 itself, before any route reads a
 * body or touches the store. The principal goes into the typed context variable `principal`.
 */
import type { MiddlewareHandler } from 'hono';
import type { Principal } from '../shared/auth/authenticator.ts';
import type { BlobKey } from '../shared/digest.ts';
import type { AccessGate } from '../shared/auth/gate.ts';
import type { Logger } from '../shared/log.ts';
import type { Metrics } from '../shared/metrics/metrics.ts';
import { HTTP_STATUS } from './errors.ts';

export interface EdgeEnv {
  /** `blob`: the key a cache request addresses, parsed once (by observeRequests) for the route to use. */
  Variables: { principal: Principal; blob: BlobKey };
}

export function edgeAuth(gate: AccessGate, log: Logger, metrics?: Metrics): MiddlewareHandler<EdgeEnv> {
  if (typeof gate?.check !== 'function') throw new TypeError('edgeAuth needs an access gate');
  return async function edgeAuth(c, next) {
    const decision = await gate.check(c.req.header('authorization'), c.req.method);
    if (decision.allowed) {
      c.set('principal', decision.principal);
      return next();
    }
    const status = HTTP_STATUS[decision.code];
    metrics?.authRefused('http', decision.code);
    // The reason is logged, never the credentials.
    const fields = {
      method: c.req.method,
      path: new URL(c.req.url).pathname,
      status,
      subject: decision.subject,
      reason: decision.message,
    };
    if (decision.code === 'unauthenticated') log.debug('refused: not authenticated', fields);
    else if (decision.code === 'permission_denied') log.info('refused: permission denied', fields);
    else log.warn('refused: authentication unavailable', fields);
    const headers = new Headers({ 'content-type': 'text/plain; charset=utf-8' });
    for (const challenge of decision.challenges) headers.append('www-authenticate', challenge);
    return new Response(`${decision.message}\n`, { status, headers });
  };
}
