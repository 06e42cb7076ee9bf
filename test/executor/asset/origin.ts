/**
 * A loopback HTTP server standing in for the internet in the Remote Asset suites: it serves fixed files,
 * redirects, slow and oversized answers, counts every request by path and remembers the headers it was sent.
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Route =
  | { body: Uint8Array | string }
  | { redirect: string; status?: number }
  | { status: number }
  /** Sends headers, then waits for `release` (or the client going away) before the body. */
  | { stall: true; release?: Promise<void> }
  /** A response whose header block alone is `bytes` long. */
  | { hugeHeader: number }
  /** Chunked, no Content-Length: `bytes` of zeros. */
  | { chunked: number };

export interface Origin {
  /** `http://127.0.0.1:PORT` */
  url: string;
  host: string;
  routes: Map<string, Route>;
  /** Requests seen, by path. */
  count(path: string): number;
  /** Headers of the last request for `path`. */
  headersOf(path: string): IncomingHttpHeaders | undefined;
  stop(): Promise<void>;
}

/** Listens on `address` (a loopback address), port chosen by the kernel. */
export async function startOrigin(routes: Record<string, Route> = {}, address = '127.0.0.1'): Promise<Origin> {
  const table = new Map(Object.entries(routes));
  const counts = new Map<string, number>();
  const headers = new Map<string, IncomingHttpHeaders>();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    headers.set(path, req.headers);
    serve(table.get(path), res);
  });
  server.listen(0, address);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    host: `${address}:${port}`,
    routes: table,
    count: (path) => counts.get(path) ?? 0,
    headersOf: (path) => headers.get(path),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function serve(route: Route | undefined, res: ServerResponse): void {
  if (route === undefined) {
    res.writeHead(404).end('not here');
  } else if ('body' in route) {
    res.writeHead(200, { 'content-length': Buffer.byteLength(route.body) }).end(route.body);
  } else if ('redirect' in route) {
    res.writeHead(route.status ?? 302, { location: route.redirect }).end();
  } else if ('stall' in route) {
    res.writeHead(200, { 'content-length': 10 });
    res.write('12345');
    void route.release?.then(() => res.end('67890'));
  } else if ('hugeHeader' in route) {
    res.writeHead(200, { 'x-padding': 'a'.repeat(route.hugeHeader), 'content-length': 2 }).end('ok');
  } else if ('chunked' in route) {
    res.writeHead(200);
    const piece = Buffer.alloc(64 * 1024);
    let left = route.chunked;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, piece.byteLength);
        left -= n;
        if (!res.write(piece.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else {
    res.writeHead(route.status).end();
  }
}
