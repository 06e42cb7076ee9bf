/**
 * Starts `larder executor`: builds the access gate from the same auth config as the edge (shared/auth), opens
 * the store, the partial-upload area and zstd, starts execution (scheduler and workers), binds the gRPC server
 * (TLS when configured) and the side door, and prints the line scripts wait for. Each step is one call below, and
 * registers how to undo itself (startup/disposal-stack.ts): a failed step closes what the earlier ones opened,
 * and close() is the same undoing. Node-only.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectDefaultMetrics } from 'prom-client';
import { checkExposure } from '../shared/auth/exposure.ts';
import { describeAuth, openAccessGate } from '../shared/auth/from-config.ts';
import type { ExecutorConfig } from './config/executor-options.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { History } from '../shared/metrics/history.ts';
import { Metrics } from '../shared/metrics/metrics.ts';
import { describeStore, type StoreConfig } from '../shared/storage/config.ts';
import { openStore } from '../shared/storage/from-config.ts';
import { bucketIndexOptions } from './storage/bucket-index.ts';
import type { BlobStore } from '../shared/storage/store.ts';
import { PartialUploads } from './bytestream/partial-uploads.ts';
import { warnAboutPasswords } from './command-line.ts';
import { executionMetrics } from './execution/metrics.ts';
import { guardPrivatePaths, type PrivatePaths, runAsName } from './private-paths.ts';
import type { Scheduler } from './scheduler/scheduler.ts';
import { DisposalStack } from './startup/disposal-stack.ts';
import { type Execution, hasWorkers, startExecution } from './startup/execution.ts';
import { startGrpcServer } from './startup/grpc-server.ts';
import { startSideDoor, statusSnapshot } from './startup/side-door.ts';
import type { WorkerPool } from './worker/in-process.ts';
import type { PersistentWorkers } from './worker/persistent/persistent-workers.ts';
import type { Worker } from './worker/worker.ts';
import { actionIdentities } from './worker/worker-host.ts';
import { loadZstd } from './reapi/zstd.ts';
import { RecentActions } from './execution/recent-actions.ts';

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
  const opened = new DisposalStack();
  try {
    return await serve(config, options, log, opened);
  } catch (err) {
    // Whatever step failed, what the steps before it opened is closed again, last first.
    await opened.dispose().catch((e: Error) => log.warn('closing after a failed start', { error: e.message }));
    throw err;
  }
}

/** The start-up steps, in order; each registers on `opened` how to undo itself, and close() undoes them all. */
async function serve(
  config: ExecutorConfig,
  options: StartOptions,
  log: Logger,
  opened: DisposalStack,
): Promise<RunningExecutor> {
  const gate = opened.use(await openAccessGate(config.auth, log), (g) => g.close());
  log.info('authentication', { auth: describeAuth(config.auth) });
  const metrics = new Metrics();
  collectDefaultMetrics({ register: metrics.registry });
  let execution: Execution | null = null;
  const actions = executionMetrics(metrics, () => execution);
  const store = await openServedStore(config, options, { log, metrics }, opened);
  const uploads = opened.use(await openUploads(config), (u) => u.close());
  const pools = options.pools ?? [
    { labels: config.execution.platform, workers: config.execution.workers, concurrency: config.execution.concurrency },
  ];
  // Before any action runs: none may read the store or the server's secrets (executor/private-paths.ts).
  if (hasWorkers(pools)) await guardPrivatePaths(privatePaths(config, options), actionUsers(config), log);
  const zstd = loadZstd();
  if (zstd === null) log.info('zstd-napi is not installed: compressed-blobs are not offered');
  execution = await startExecution({ config, pools, store, log, onFinished: actions.finished }, opened);
  const recent = execution === null ? null : new RecentActions(store, log);
  const { url, port } = await startGrpcServer(
    {
      config,
      log,
      store,
      uploads,
      zstd,
      gate,
      metrics,
      execution,
      recent,
      keepaliveMs: options.keepaliveMs ?? KEEPALIVE_MS,
    },
    opened,
  );
  if (options.announce ?? true) console.log(`larder executor listening on ${url}`);
  const history = opened.use(new History({ totals: () => metrics.totals() }).start(), (h) => h.stop());
  const storage = options.store === undefined ? describeStore(config.store) : 'a store given by the embedding program';
  const status = statusSnapshot({ config, storage, metrics, history, execution });
  const side = await startSideDoor({ config, gate, log, metrics, status, recent }, opened);
  if (side !== null && (options.announce ?? true)) console.log(`larder executor metrics on ${side.url}/metrics`);
  return {
    url,
    port,
    metricsUrl: side?.url ?? null,
    metrics,
    scheduler: execution?.scheduler ?? null,
    workers: execution?.workers?.workers ?? [],
    persistentWorkers: execution?.workers?.persistentWorkers ?? null,
    close: () => opened.dispose(),
  };
}

/** The store the config names (closed again by the stack), or the one the embedding program passed (its own). */
async function openServedStore(
  config: ExecutorConfig,
  options: StartOptions,
  dependencies: { log: Logger; metrics: Metrics },
  opened: DisposalStack,
): Promise<BlobStore> {
  if (options.store !== undefined) return options.store;
  const bucketIndex = bucketIndexOptions(config.bucketIndex, config.execution, { log: dependencies.log });
  const store = opened.use(await openStore(config.store, { ...dependencies, bucketIndex }), (s) => s.close?.());
  dependencies.log.info('store ready', { store: describeStore(config.store) });
  return store;
}

function openUploads(config: ExecutorConfig): Promise<PartialUploads> {
  return PartialUploads.open({
    // Beside the blobs on a disk store, whose filesystem was sized for them; else the system temp folder.
    parentDir: config.store.kind === 'disk' ? join(config.store.path, 'uploads') : join(tmpdir(), 'larder-uploads'),
    maxBytes: 1024 * MiB,
    maxUploads: 64,
    idleMs: 10 * 60 * 1000,
    minBlobBytes: MiB,
  });
}

function actionUsers(config: ExecutorConfig): Array<{ uid: number; gid: number; name: string }> {
  const name = runAsName(config.execution);
  return actionIdentities(config.execution).all.map((id) => ({ ...id, name }));
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
