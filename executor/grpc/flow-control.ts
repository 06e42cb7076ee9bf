/**
 * Widens the HTTP/2 receive windows of a grpc-js server's connections.
 *
 * HTTP/2 starts every stream with a 64 KiB receive window, so a client can have at most 64 KiB of an
 * upload in flight per round trip: about 64 MB/s at 1 ms RTT, 6 MB/s at 10 ms, however fast the link.
 * grpc-js only offers a window option for clients ('grpc-node.flow_control_window'), so this reaches the
 * http2 servers grpc-js keeps in a private field and raises the windows of each new session. If a later
 * grpc-js renames that field, nothing breaks: the defaults stay and this returns false
 * (test/executor/flow-control.test.ts checks the window actually advertised).
 *
 * Memory stays bounded: a stream whose handler is not reading still receives at most its window, and
 * all streams of a connection together at most the connection window.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Http2Server, Http2Session } from 'node:http2';

export interface ReceiveWindows {
  /** Per stream (one RPC): how much of an upload may be in flight. */
  streamBytes: number;
  /** Per connection, shared by its streams. */
  connectionBytes: number;
}

export const DEFAULT_RECEIVE_WINDOWS: ReceiveWindows = {
  streamBytes: 4 * 1024 * 1024,
  connectionBytes: 16 * 1024 * 1024,
};

/** Call after bindAsync. Returns whether the windows could be set. */
export function widenReceiveWindows(server: grpc.Server, windows: ReceiveWindows = DEFAULT_RECEIVE_WINDOWS): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) return false;
  for (const http2Server of servers.keys() as IterableIterator<Http2Server>) {
    if (typeof http2Server?.on !== 'function') return false;
    http2Server.on('session', (session: Http2Session) => {
      try {
        session.settings({ initialWindowSize: windows.streamBytes });
        session.setLocalWindowSize(windows.connectionBytes);
      } catch {
        // A session that is already closing: nothing to widen.
      }
    });
  }
  return servers.size > 0;
}
