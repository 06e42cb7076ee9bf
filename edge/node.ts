/** Serves the edge on Node through @hono/node-server. */
import { serve } from '@hono/node-server';
import { collectDefaultMetrics } from 'prom-client';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { EdgeConfig } from '../shared/config.ts';
import { LarderError } from '../shared/errors.ts';
import { autoMaxConnections } from './connections.ts';
import { WholeBodies } from './bodies.ts';
import { nodeBodies, nodeSender } from './node-body.ts';
import { buildEdge, listeningLine } from './start.ts';

export interface RunningEdge {
  url: string;
  close(): Promise<void>;
}

export interface NodeEdgeOptions {
  /** Print the listening line (tests and scripts wait for it); a child of --processes leaves that to its primary. */
  announce?: boolean;
}

export async function startNodeEdge(config: EdgeConfig, options: NodeEdgeOptions = {}): Promise<RunningEdge> {
  // With a certificate the edge speaks HTTPS itself, for deployments without a terminating proxy.
  const tls =
    config.tls === null
      ? null
      : { cert: readPem(config.tls.certPath, '--tls-cert'), key: readPem(config.tls.keyPath, '--tls-key') };
  // Uploads are read straight from the socket, and downloads of up to 2 MiB sent in one write (node-body.ts): the
  // web-standard Request and Response bodies cost most here. One budget bounds the bytes held for both.
  const whole = new WholeBodies();
  const { app, store, gate, metrics, history } = await buildEdge(config, {
    bodies: nodeBodies(whole),
    sender: nodeSender(whole),
  });
  // The process's CPU, memory, event-loop delay and file descriptors (Node only: prom-client reads them from Node's APIs).
  collectDefaultMetrics({ register: metrics.registry });
  const listen = { fetch: app.fetch, hostname: config.listen.host, port: config.listen.port };
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s =
      tls === null
        ? serve(listen, () => resolve(s))
        : serve({ ...listen, createServer: createHttpsServer, serverOptions: tls }, () => resolve(s));
  });
  const http = server as import('node:http').Server;
  // Bazel keeps up to 100 connections open and reuses them between actions; don't drop idle ones too eagerly.
  http.keepAliveTimeout = 65_000;
  // No overall deadline (Node's default cuts every request at 300 s, so a 4 GiB upload would need 14 MB/s):
  // a connection is closed only when no byte has moved either way for the idle timeout.
  http.requestTimeout = 0;
  http.timeout = config.idleTimeoutMs;
  const maxConnections = config.maxConnections ?? autoMaxConnections();
  // Connections past the cap are refused at once, which clients retry, instead of failing with EMFILE inside.
  if (maxConnections !== null) http.maxConnections = maxConnections;
  const { port } = server.address() as AddressInfo;
  if (options.announce !== false) console.log(listeningLine('node', config.listen.host, port, tls !== null));
  return {
    url: `${tls === null ? 'http' : 'https'}://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      history.stop();
      gate.close();
      await store.close?.();
    },
  };
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new LarderError('invalid_argument', `${flag} ${path}: ${(err as Error).message}`);
  }
}
