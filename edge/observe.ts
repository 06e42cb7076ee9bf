/**
 * Counts every cache request (`/[instance/]{ac|cas}/{hash}`) by method, kind and outcome, and the bytes that
 * moved. Registered before authentication, so refusals (401/403) are counted too; health, metrics and status
 * requests are not cache requests and are not counted.
 */
import type { MiddlewareHandler } from 'hono';
import type { Metrics, Outcome } from '../shared/metrics/metrics.ts';
import { parseBlobPath } from './blob-path.ts';

export function observeRequests(metrics: Metrics): MiddlewareHandler {
  return async function observeRequests(c, next) {
    const key = parseBlobPath(new URL(c.req.url).pathname);
    if (key === null) return next();
    await next();
    const method = c.req.method;
    const status = c.res.status;
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
