/**
 * Starts `larder executor`: builds the access gate from the same auth config as the edge (shared/auth), opens
 * the store, the partial-upload area and zstd, binds the gRPC server (TLS when configured) and prints the line
 * scripts wait for. Node-only.
 */
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics } from 'prom-client';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkExposure } from '../shared/auth/exposure.ts';
import { warnAboutPasswords } from './command-line.ts';
import { describeAuth, openAccessGate } from '../shared/auth/from-config.ts';
import type { AccessGate } from '../shared/auth/gate.ts';
import type { ExecutorConfig } from '../shared/config.ts';
import { LarderError } from '../shared/errors.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { History } from '../shared/metrics/history.ts';
import { Metrics } from '../shared/metrics/metrics.ts';
import { renderStatusPage, type StatusSnapshot } from '../shared/status/page.ts';
import { describeStore, type StoreConfig } from '../shared/storage/config.ts';
import { openStore } from '../shared/storage/from-config.ts';
import type { BlobStore } from '../shared/storage/store.ts';
import { PartialUploads } from './bytestream/partial-uploads.ts';
import { describeWorkerPlatform } from './execution/platform.ts';
import { executionMetrics, type ExecutionSource } from './execution/metrics.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';
import { widenReceiveWindows } from './grpc/flow-control.ts';
import { guardPrivatePaths, type PrivatePaths, runAsName } from './private-paths.ts';
import { MemoryScheduler } from './scheduler/memory-scheduler.ts';
import { redactUrl } from './scheduler/redis/connection.ts';
import { RedisScheduler } from './scheduler/redis/redis-scheduler.ts';
import type { Scheduler } from './scheduler/scheduler.ts';
import { createExecutorServer } from './server.ts';
import { startInProcessWorkers, type WorkerPool } from './worker/in-process.ts';
import { actionIdentities } from './worker/worker-host.ts';
import type { PersistentWorkers } from './worker/persistent/persistent-workers.ts';
import type { Worker } from './worker/worker.ts';
import { loadZstd } from './zstd.ts';

export interface RunningExecutor {
  /** grpc://HOST:PORT or grpcs://HOST:PORT, with the real port when the config asked for port 0. */
  url: string;
  port: number;
  /** http://HOST:PORT of /metrics and /status (--metrics-listen), or null when not served. */
  metricsUrl: string | null;
  /** The server's metrics registry (tests read it; /metrics serves it). */
  metrics: Metrics;
  /** The scheduler and in-process workers (null without execution): what tests and the status page read. */
  scheduler: Scheduler | null;
  workers: readonly Worker[];
  persistentWorkers: PersistentWorkers | null;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Serve this store instead of opening one from the config (tests share one store with an edge). */
  store?: BlobStore;
  /** Print the listening line (the CLI does; tests may not want it). */
  announce?: boolean;
  /** Worker pools instead of the one the flags describe (tests run an amd64 and an "arm64" pool side by side). */
  pools?: WorkerPool[];
  /** How often Execute streams hear from a running action; default KEEPALIVE_MS (tests shorten it). */
  keepaliveMs?: number;
  /** The arguments larder was started with (the CLI passes them, already hidden from /proc): warned about. */
  commandLine?: readonly string[];
}

/** How often Execute and WaitExecution streams hear from a long action. */
const KEEPALIVE_MS = 30_000;

const MiB = 1024 * 1024;

export async function startExecutor(config: ExecutorConfig, options: StartOptions = {}): Promise<RunningExecutor> {
  const log = createLogger(config.logLevel, config.logFormat);
  if (options.commandLine !== undefined) warnAboutPasswords(options.commandLine, log);
  checkExposure({ host: config.listen.host, auth: config.auth, tls: config.tls !== null, plainProtocol: 'grpc' }, log);
  const gate = await openAccessGate(config.auth, log);
  log.info('authentication', { auth: describeAuth(config.auth) });
  try {
    return await serve(config, options, log, gate);
  } catch (err) {
    gate.close();
    throw err;
  }
}

async function serve(
  config: ExecutorConfig,
  options: StartOptions,
  log: Logger,
  gate: AccessGate,
): Promise<RunningExecutor> {
  const metrics = new Metrics();
  collectDefaultMetrics({ register: metrics.registry });
  let execution_: ExecutionSource | null = null;
  const actions = executionMetrics(metrics, () => execution_);
  const store = options.store ?? (await openStore(config.store, { log, metrics }));
  if (options.store === undefined) log.info('store ready', { store: describeStore(config.store) });
  const uploads = await PartialUploads.open({
    // Beside the blobs on a disk store, whose filesystem was sized for them; else the system temp folder.
    parentDir: config.store.kind === 'disk' ? join(config.store.path, 'uploads') : join(tmpdir(), 'larder-uploads'),
    maxBytes: 1024 * MiB,
    maxUploads: 64,
    idleMs: 10 * 60 * 1000,
    minBlobBytes: MiB,
  });
  const pools = options.pools ?? [
    { labels: config.execution.platform, workers: config.execution.workers, concurrency: config.execution.concurrency },
  ];
  const hasWorkers = pools.some((pool) => pool.workers > 0);
  if (hasWorkers) {
    // Before any action runs: none may read the store or the server's secrets (executor/private-paths.ts).
    const name = runAsName(config.execution);
    const identities = actionIdentities(config.execution).all.map((id) => ({ ...id, name }));
    try {
      await guardPrivatePaths(privatePaths(config, options), identities, log);
    } catch (err) {
      await uploads.close();
      if (options.store === undefined) await store.close?.();
      throw err;
    }
  }
  const zstd = loadZstd();
  if (zstd === null) log.info('zstd-napi is not installed: compressed-blobs are not offered');

  // With a shared Redis queue this process executes even without workers of its own: it is a frontend of a
  // fleet whose workers (`larder worker`, other executors) take the jobs it queues.
  const { queue } = config.execution;
  const scheduler: Scheduler | null =
    queue !== 'memory'
      ? await RedisScheduler.open({
          url: queue,
          passwordFile: config.execution.queuePasswordFile,
          caPath: config.execution.queueCaPath,
          log,
          leaseMs: config.execution.queueLeaseMs,
        })
      : hasWorkers
        ? new MemoryScheduler()
        : null;
  if (queue !== 'memory') log.info('queue ready', { queue: redactUrl(queue) });
  const workers =
    scheduler === null || !hasWorkers
      ? null
      : await startInProcessWorkers({
          config: config.execution,
          pools,
          store,
          scheduler,
          log,
          onFinished: actions.finished,
        });
  if (scheduler !== null)
    execution_ = {
      scheduler,
      workerPlatforms: () => (workers?.workers ?? []).map((w) => describeWorkerPlatform(w.platform)),
    };
  const timeouts = { defaultMs: config.execution.actionTimeoutMs, maxMs: config.execution.maxActionTimeoutMs };
  const execution =
    scheduler === null ? undefined : { scheduler, timeouts, keepaliveMs: options.keepaliveMs ?? KEEPALIVE_MS };
  const server = createExecutorServer({ ...config, store, log, uploads, zstd, gate, execution, metrics });
  const credentials = config.tls === null ? grpc.ServerCredentials.createInsecure() : await tlsCredentials(config.tls);
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${config.listen.port}`, credentials, (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  if (!widenReceiveWindows(server))
    log.warn(
      'could not widen HTTP/2 receive windows (grpc-js internals changed?): uploads stay at 64 KiB per round trip',
    );
  const url = `${config.tls === null ? 'grpc' : 'grpcs'}://${host}:${port}`;
  if (options.announce ?? true) console.log(`larder executor listening on ${url}`);
  const history = new History({ totals: () => metrics.totals() }).start();
  const startedAt = new Date();
  const status = async (): Promise<StatusSnapshot> => {
    const stats = await scheduler?.stats();
    const platforms = execution_?.workerPlatforms() ?? [];
    const workerCounts = [...new Set(platforms)].map((platform) => ({
      platform,
      count: platforms.filter((p) => p === platform).length,
    }));
    return {
      title: 'larder executor',
      startedAt,
      now: new Date(),
      totals: metrics.totals(),
      history: history.series(),
      auth: describeAuth(config.auth),
      storage: options.store === undefined ? describeStore(config.store) : 'a store given by the embedding program',
      execution:
        stats === undefined ? undefined : { queued: stats.queued, running: stats.running, workers: workerCounts },
    };
  };
  let side: MetricsServer | null = null;
  try {
    side =
      config.metricsListen === null
        ? null
        : await startMetricsServer({
            listen: config.metricsListen,
            gate,
            log,
            metrics,
            routes: (app) => app.get('/status', async (c) => c.html(renderStatusPage(await status()))),
          });
  } catch (err) {
    history.stop();
    server.forceShutdown();
    await scheduler?.close();
    await workers?.stop();
    throw new LarderError('invalid_argument', `--metrics-listen: ${(err as Error).message}`);
  }
  if (side !== null && (options.announce ?? true)) console.log(`larder executor metrics on ${side.url}/metrics`);

  return {
    url,
    port,
    metricsUrl: side?.url ?? null,
    metrics,
    scheduler,
    workers: workers?.workers ?? [],
    persistentWorkers: workers?.persistentWorkers ?? null,
    async close() {
      // Queued operations end UNAVAILABLE and running ones are stopped, so streams end and the server can close.
      await side?.close();
      history.stop();
      await scheduler?.close();
      await workers?.stop();
      // Give calls in flight a moment to finish, then cut the rest off.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 5000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await uploads.close();
      gate.close();
      if (options.store === undefined) await store.close?.();
    },
  };
}

/**
 * What actions must not get at: the folders of a disk store (every client's blobs; a store the embedding program
 * passed is its business) and the files holding secrets (config, htpasswd, TLS key, queue password).
 */
function privatePaths(config: ExecutorConfig, options: StartOptions): PrivatePaths {
  const htpasswd = config.auth.htpasswd?.path;
  return {
    required: options.store === undefined ? diskFolders(config.store) : [],
    advised: [...new Set([...config.execution.secretPaths, ...(htpasswd === undefined ? [] : [htpasswd])])],
  };
}

function diskFolders(store: StoreConfig): string[] {
  if (store.kind === 'disk') return [store.path];
  return store.kind === 'tiered' ? store.tiers.flatMap(diskFolders) : [];
}

async function tlsCredentials(tls: { certPath: string; keyPath: string }): Promise<grpc.ServerCredentials> {
  const read = (path: string, what: string) =>
    readFile(path).catch((err: Error) =>
      Promise.reject(new LarderError('invalid_argument', `cannot read the TLS ${what} ${path}: ${err.message}`)),
    );
  // Both are read at once, but a failure is reported in a fixed order (certificate first), not by which
  // read happened to fail first: the same bad configuration always gives the same message.
  const [certRead, keyRead] = await Promise.allSettled([read(tls.certPath, 'certificate'), read(tls.keyPath, 'key')]);
  if (certRead.status === 'rejected') throw certRead.reason;
  if (keyRead.status === 'rejected') throw keyRead.reason;
  const [cert, key] = [certRead.value, keyRead.value];
  try {
    return grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
  } catch (err) {
    throw new LarderError('invalid_argument', `invalid TLS certificate or key: ${(err as Error).message}`);
  }
}
