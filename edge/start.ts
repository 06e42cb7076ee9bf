/** Builds a ready-to-serve edge from its config: store, logger, app. Shared by the runtime entry files. */
import { checkExposure } from '../shared/auth/exposure.ts';
import { describeAuth, openAccessGate } from '../shared/auth/from-config.ts';
import type { AccessGate } from '../shared/auth/gate.ts';
import type { EdgeConfig } from '../shared/config.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { History } from '../shared/metrics/history.ts';
import { Metrics } from '../shared/metrics/metrics.ts';
import { describeStore } from '../shared/storage/config.ts';
import { openStore } from '../shared/storage/from-config.ts';
import type { BlobStore } from '../shared/storage/store.ts';
import { createEdgeApp, type EdgeApp } from './app.ts';
import type { BlobSender, BodyReceiver, FileSender } from './bodies.ts';

export interface Edge {
  app: EdgeApp;
  store: BlobStore;
  gate: AccessGate;
  log: Logger;
  metrics: Metrics;
  /** The status page's last hour; sampling stops with stop(). */
  history: History;
}

export interface BuildEdgeOptions {
  /** The runtime's body receiver (edge/node-body.ts on Node); the web-standard one otherwise. */
  bodies?: BodyReceiver;
  /** The runtime's blob sender (edge/node-body.ts on Node); the web-standard one otherwise. */
  sender?: BlobSender;
  /** The runtime's sender of blobs the store located in files (edge/bun-body.ts on Bun); none otherwise. */
  fileSender?: FileSender;
}

export async function buildEdge(config: EdgeConfig, runtime: BuildEdgeOptions = {}): Promise<Edge> {
  const log = createLogger(config.logLevel, config.logFormat);
  checkExposure({ host: config.listen.host, auth: config.auth, tls: config.tls !== null, plainProtocol: 'http' }, log);
  const gate = await openAccessGate(config.auth, log);
  log.info('authentication', { auth: describeAuth(config.auth) });
  const metrics = new Metrics();
  const store = await openStore(config.store, { log, metrics });
  log.info('store ready', { store: describeStore(config.store) });
  const history = new History({ totals: () => metrics.totals() }).start();
  const startedAt = new Date();
  const auth = describeAuth(config.auth);
  const storage = describeStore(config.store);
  const app = createEdgeApp({
    store,
    log,
    maxBlobBytes: config.maxBlobBytes,
    validateActionResults: config.validateActionResults,
    gate,
    metrics,
    status: () => ({
      title: 'larder edge',
      startedAt,
      now: new Date(),
      totals: metrics.totals(),
      history: history.series(),
      auth,
      storage,
    }),
    bodies: runtime.bodies,
    sender: runtime.sender,
    fileSender: runtime.fileSender,
  });
  return { app, store, gate, log, metrics, history };
}

/** The line tests and scripts wait for; it carries the real port when the config asked for port 0. */
export function listeningLine(runtime: string, host: string, port: number, tls = false): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return `larder edge (${runtime}) listening on ${tls ? 'https' : 'http'}://${shown}:${port}`;
}
