/**
 * The edge: Bazel's HTTP remote-cache protocol as a web-standard Request → Response app.
 * Runtime entry files (node.ts, deno.ts, bun.ts) only serve its `fetch`.
 *
 *   GET  /[instance/]{ac|cas}/{hash}   200 with the blob, 404 on a miss
 *   HEAD /[instance/]{ac|cas}/{hash}   200 with Content-Length, 404 on a miss; never reads a CAS blob (an AC
 *                                      entry is read and validated, so HEAD and GET agree)
 *   PUT  /[instance/]{ac|cas}/{hash}   stores the body once its length (and, for cas, SHA-256) checks out
 */
import { Hono } from 'hono';
import { REQUEST_METADATA_KEY } from '../shared/request-metadata.ts';
import { renderStatusPage, type StatusSnapshot } from '../shared/status/page.ts';
import { edgeAuth, type EdgeEnv } from './auth.ts';
import { type BlobSender, type BodyReceiver, webBodies, webSender } from './bodies.ts';
import { parseBlobPath } from './blob-path.ts';
import { type CacheRequestOptions, cacheRequests, errorResponse } from './cache-requests.ts';

export interface EdgeAppOptions extends Omit<CacheRequestOptions, 'bodies' | 'sender'> {
  /** What `GET /status` shows (read role, like the cache); no status page without it. */
  status?: () => StatusSnapshot | Promise<StatusSnapshot>;
  /** The runtime's body receiver (bodies.ts); the web-standard one by default. */
  bodies?: BodyReceiver;
  /** The runtime's blob sender (bodies.ts): bytes as they are, streams streamed, by default. */
  sender?: BlobSender;
}

/** The edge as its runtime entry serves it. */
export interface EdgeApp {
  /** Answers one request; `env` is whatever the runtime's adapter passes with it (@hono/node-server's Node objects). */
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
  /** Answers a request for `path` on this app without a server (tests, embedding). */
  request(path: string, init?: RequestInit): Promise<Response>;
}

export function createEdgeApp(options: EdgeAppOptions): EdgeApp {
  const { log, metrics, gate, status } = options;
  const cacheRequest = cacheRequests({
    ...options,
    bodies: options.bodies ?? webBodies(),
    sender: options.sender ?? webSender,
  });

  // Everything but cache requests: the health check, then (authenticated and authorised first) metrics and status.
  const routes = new Hono<EdgeEnv>();
  routes.get('/healthz', (c) => c.text('ok\n'));
  if (gate !== undefined) routes.use('*', edgeAuth(gate, log, metrics));
  if (metrics !== undefined) {
    routes.get('/metrics', async (c) =>
      c.body(await metrics.exposition(), 200, { 'content-type': metrics.contentType }),
    );
  }
  if (status !== undefined) routes.get('/status', async (c) => c.html(renderStatusPage(await status())));
  routes.all('*', (c) =>
    c.text('not found: cache paths are /[instance/]ac/{sha256} and /[instance/]cas/{sha256}\n', 404),
  );
  routes.onError((err, c) =>
    errorResponse(err, log, c.req.method, pathOf(c.req.url), c.req.header(REQUEST_METADATA_KEY) ?? null),
  );

  function fetch(request: Request, env?: unknown): Response | Promise<Response> {
    const path = pathOf(request.url);
    let key;
    try {
      key = parseBlobPath(path);
    } catch (err) {
      return errorResponse(err, log, request.method, path, request.headers.get(REQUEST_METADATA_KEY));
    }
    return key === null ? routes.fetch(request, env) : cacheRequest(request, env, path, key);
  }
  return { fetch, request: async (path, init) => fetch(new Request(new URL(path, 'http://localhost'), init)) };
}

/**
 * The path of a Request's URL, as `new URL(url).pathname` gives it, without parsing the URL again: a Request's url
 * is already serialised by the URL standard (`scheme://authority/path?query`; the fragment is never sent).
 */
function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  if (start === -1) return '/';
  const query = url.indexOf('?', start);
  return query === -1 ? url.slice(start) : url.slice(start, query);
}
