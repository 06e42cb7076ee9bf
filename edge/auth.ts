/**
 * The edge's authentication: asks the access gate whether a request's credentials allow its method, and answers
 * 401 (with `WWW-Authenticate` challenges) or 403 itself, before anything reads a body or touches the store.
 * Cache requests call `authorize` (cache-requests.ts); the edge's other routes, and the executor's metrics server,
 * use it as the Hono middleware `edgeAuth`, which puts the principal into the typed context variable `principal`.
 */
import type { MiddlewareHandler } from 'hono';
import type { Principal } from '../shared/auth/authenticator.ts';
import type { AccessGate } from '../shared/auth/gate.ts';
import type { Logger } from '../shared/log.ts';
import type { Metrics } from '../shared/metrics/metrics.ts';
import { HTTP_STATUS } from './errors.ts';

export interface EdgeEnv {
  Variables: { principal: Principal };
}

export function edgeAuth(gate: AccessGate, log: Logger, metrics?: Metrics): MiddlewareHandler<EdgeEnv> {
  if (typeof gate?.check !== 'function') throw new TypeError('edgeAuth needs an access gate');
  return async function edgeAuth(c, next) {
    const outcome = await authorize(gate, log, metrics, c.req.raw);
    if (outcome instanceof Response) return outcome;
    c.set('principal', outcome);
    return next();
  };
}

/**
 * Who sent `request`, if they may do what its method asks; otherwise the refusal to answer with, logged (the
 * reason, never the credentials) and counted. `path` is the request's, when the caller has it already.
 */
export async function authorize(
  gate: AccessGate,
  log: Logger,
  metrics: Metrics | undefined,
  request: Request,
  path?: string,
): Promise<Principal | Response> {
  const decision = await gate.check(request.headers.get('authorization'), request.method);
  if (decision.allowed) return decision.principal;
  const status = HTTP_STATUS[decision.code];
  metrics?.authRefused('http', decision.code);
  const fields = {
    method: request.method,
    path: path ?? new URL(request.url).pathname,
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
}
