/**
 * Calls to methods larder does not serve. grpc-js answers them UNIMPLEMENTED before any handler, interceptor or
 * log of ours sees them, so a client that gave up after probing one (BuildStream asks for
 * `buildstream.v2.ReferenceStorage/Status`) left no trace. This listens beside grpc-js on the http2 servers it
 * keeps in a private field (as flow-control.ts does) and, for a path grpc-js has no handler for, logs the method
 * and the client's address once per pair and counts the call in larder_grpc_calls_total (code UNIMPLEMENTED).
 * It only watches: grpc-js still answers. Should a later grpc-js rename those fields, this returns false.
 *
 * Memory stays bounded whatever clients send: at most MAX_LOGGED pairs are remembered (then forgotten at once,
 * so a pair may be logged again), and at most MAX_LABELS method names get a label of their own.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../../shared/log.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';

const MAX_LOGGED = 1000;
const MAX_LABELS = 32;
const MAX_PATH = 200;

/** Call after bindAsync. Returns whether the server's calls can be watched. */
export function watchUnservedMethods(server: grpc.Server, options: { log: Logger; metrics?: Metrics }): boolean {
  const internals = server as unknown as { http2Servers?: unknown; handlers?: unknown };
  const { http2Servers: servers, handlers } = internals;
  if (!(servers instanceof Map) || !(handlers instanceof Map)) return false;
  const logged = new Set<string>();
  const labels = new Set<string>();
  const unserved = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const path = headers[':path'];
    // Only gRPC calls (grpc-js refuses other content types itself), and only those grpc-js has no handler for.
    if (typeof path !== 'string' || handlers.has(path)) return;
    if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) return;
    const method = path.slice(0, MAX_PATH);
    if (labels.size < MAX_LABELS) labels.add(method);
    options.metrics?.grpcCall(labels.has(method) ? method : 'other unserved', 'UNIMPLEMENTED');
    const client = stream.session?.socket?.remoteAddress ?? 'unknown';
    const key = `${method} ${client}`;
    if (logged.has(key)) return;
    if (logged.size >= MAX_LOGGED) logged.clear();
    logged.add(key);
    options.log.warn('a client called a method larder does not serve; it was answered UNIMPLEMENTED', {
      method,
      client,
      userAgent: String(headers['user-agent'] ?? '').slice(0, MAX_PATH),
    });
  };
  for (const http2Server of servers.keys() as IterableIterator<Http2Server>) {
    if (typeof http2Server?.on !== 'function') return false;
    http2Server.on('stream', unserved);
  }
  return servers.size > 0;
}
