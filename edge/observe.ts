/**
 * Observes every cache request (`/[instance/]{ac|cas}/{hash}`): one `request` log line (at debug) with its
 * status, duration and Bazel's invocation and action ids when the client sent them, and, with metrics, counts
 * by method, kind and outcome and the bytes that moved. Registered before authentication, so refusals (401/403)
 * are seen too; health, metrics and status requests are not cache requests and are left alone.
 */
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../shared/log.ts';
import type { Metrics, Outcome } from '../shared/metrics/metrics.ts';
import { REQUEST_METADATA_KEY, requestMetadataFields, requestMetadataFromHeader } from '../shared/request-metadata.ts';
import type { EdgeEnv } from './auth.ts';
import { parseBlobPath } from './blob-path.ts';

export function observeRequests(log: Logger, metrics?: Metrics): MiddlewareHandler<EdgeEnv> {
  return async function observeRequests(c, next) {
    const path = new URL(c.req.url).pathname;
    const key = parseBlobPath(path);
    if (key === null) return next();
    c.set('blob', key);
    const started = performance.now();
    await next();
    const method = c.req.method;
    const status = c.res.status;
    const ms = Math.round((performance.now() - started) * 10) / 10;
    log.debug('request', {
      method,
      path,
      status,
      ms,
      ...requestMetadataFields(requestMetadataFromHeader(c.req.header(REQUEST_METADATA_KEY))),
    });
    if (metrics === undefined) return;
    metrics.request('http', method, key.kind, outcomeOf(method, status));
    if (status !== 200) return;
    if (method === 'PUT') metrics.bytes('http', 'in', Number(c.req.header('content-length') ?? 0));
    else if (method === 'GET') metrics.bytes('http', 'out', Number(c.res.headers.get('content-length') ?? 0));
  };
}

/** 200 is a hit (GET, HEAD) or stored (PUT); 404 a miss; other 4xx the client's fault; 5xx the server's. */
export function outcomeOf(method: string, status: number): Outcome {
  if (status >= 200 && status < 300) return method === 'PUT' ? 'stored' : 'hit';
  if (status === 404) return 'miss';
  if (status >= 500) return 'error';
  return 'refused';
}
