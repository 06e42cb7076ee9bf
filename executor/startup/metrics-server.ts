/**
 * The executor's HTTP side door (`--metrics-listen`): its main port speaks only gRPC, so `/metrics`, `/status` and
 * `/healthz` are served here, by the same Hono routes and the same authentication middleware as the edge's
 * (read role; `/healthz` open).
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { edgeAuth, type EdgeEnv } from '../../edge/auth.ts';
import type { AccessGate } from '../../shared/auth/gate.ts';
import type { ListenAddress } from '../../shared/config.ts';
import type { Logger } from '../../shared/log.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';

export interface MetricsServerOptions {
  listen: ListenAddress;
  gate: AccessGate;
  log: Logger;
  metrics: Metrics;
  /** Adds more routes behind authentication (the status page). */
  routes?: (app: Hono<EdgeEnv>) => void;
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics } = options;
  const app = new Hono<EdgeEnv>();
  app.get('/healthz', (c) => c.text('ok\n'));
  app.use('*', edgeAuth(options.gate, options.log, metrics));
  app.get('/metrics', async (c) => c.body(await metrics.exposition(), 200, { 'content-type': metrics.contentType }));
  options.routes?.(app);
  const { host, port } = options.listen;
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s));
    s.once('error', reject); // a port in use, an address not on this machine
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // close() waits for every connection to end, and a browser keeps some open for as long as it likes
        // (keep-alive, and sockets it opened ahead of a request): a scrape cut short by a shutdown is no loss.
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}
