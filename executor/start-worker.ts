/**
 * `larder worker`: one Worker in a process of its own, on any host. It joins the fleet's Redis queue with the
 * platform of the process it runs in (OSFamily and Arch from Node itself, so an arm64 Node reports arm64),
 * stages inputs through its own file cache, and reads and writes blobs through a frontend's REAPI CAS.
 *
 * Its name (ExecutedActionMetadata.worker) is `HOST/ARCH/PID`; the queue adds a random suffix per join, so a
 * restarted worker with the same PID is never taken for the old one.
 */
import { arch, hostname } from 'node:os';
import type { WorkerConfig } from './config/worker-options.ts';
import { LarderError } from '../shared/errors.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { describeWorkerPlatform, workerPlatform } from './reapi/platform.ts';
import { warnAboutPasswords } from './command-line.ts';
import { guardPrivatePaths, runAsName } from './private-paths.ts';
import { RedisScheduler } from './scheduler/redis/redis-scheduler.ts';
import { openFrontend } from './worker/frontend.ts';
import { grpcActionCacheWriter, grpcCas } from './worker/grpc-cas.ts';
import { DisposalStack, once } from './startup/disposal-stack.ts';
import { openWorkerSideDoor } from './startup/worker-side-door.ts';
import { Worker } from './worker/worker.ts';
import { actionIdentities, openWorkerHost } from './worker/worker-host.ts';

export interface RunningWorker {
  readonly name: string;
  readonly worker: Worker;
  /** http://HOST:PORT of /metrics and /status (--metrics-listen), or null when not served. */
  readonly metricsUrl: string | null;
  /** Hands running jobs back to the queue, stops taking work and closes connections. */
  close(): Promise<void>;
}

/**
 * How long a stopped worker (SIGTERM) may take to drain: its runs are stopped at once and their jobs handed back
 * within the queue's shutdown grace (15 s); what is left after this is the lease sweep's, and the process exits.
 */
export const WORKER_DRAIN_MS = 20_000;

export async function startWorkerProcess(
  config: WorkerConfig,
  options: { announce?: boolean; commandLine?: readonly string[] } = {},
): Promise<RunningWorker> {
  const log = createLogger(config.logLevel, config.logFormat);
  if (options.commandLine !== undefined) warnAboutPasswords(options.commandLine, log);
  const opened = new DisposalStack();
  try {
    return await start(config, options, log, opened);
  } catch (err) {
    // Whatever step failed, what the steps before it opened (the queue's connections among them) is closed again.
    await opened.dispose().catch((e: Error) => log.warn('closing after a failed start', { error: e.message }));
    throw err;
  }
}

/** The start-up steps, in order; each registers on `opened` how to undo itself, and close() undoes them all. */
async function start(
  config: WorkerConfig,
  options: { announce?: boolean },
  log: Logger,
  opened: DisposalStack,
): Promise<RunningWorker> {
  const frontend = opened.use(
    openFrontend({
      url: config.frontend,
      caPath: config.frontendCaPath,
      credentialsPath: config.frontendCredentialsPath,
    }),
    (f) => f.close(),
  );
  await checkFrontend(frontend);
  // Actions must not read the frontend credentials or the queue password (executor/private-paths.ts).
  const secrets = { required: [], advised: config.execution.secretPaths };
  const runAs = runAsName(config.execution);
  const identities = actionIdentities(config.execution).all.map((id) => ({ ...id, name: runAs }));
  await guardPrivatePaths(secrets, identities, log);
  const scheduler = await RedisScheduler.open({
    url: config.queue,
    passwordFile: config.execution.queuePasswordFile,
    caPath: config.execution.queueCaPath,
    log,
    leaseMs: config.queueLeaseMs,
  });
  const closeScheduler = once(() => scheduler.close());
  opened.defer(closeScheduler);
  const side = opened.use(await openWorkerSideDoor(config, log), (s) => s.close());
  const host = opened.use(await openWorkerHost(config.execution, log), (h) => h.close());
  const platform = workerPlatform(config.execution.platform, host.runnerKinds);
  const name = `${hostname()}/${normalArch()}/${process.pid}`;
  const worker = new Worker({
    name,
    scheduler,
    platform,
    concurrency: config.execution.concurrency,
    log,
    onFinished: side.actions.finished,
    environment: {
      ...host.environment,
      casFor: (instance) => host.rememberedBlobs.wrap(grpcCas(frontend, instance), instance),
      // The fleet's frontends read one shared store, not through this process: the answer waits for the write.
      actionCache: { write: grpcActionCacheWriter(frontend), readsWaitForWrites: false },
    },
  });
  await worker.start();
  opened.defer(async () => {
    // The queue first: it stops runs and hands their jobs back, so another worker starts them at once.
    await closeScheduler();
    await worker.stop();
  });
  const metrics = await side.serve({ name, worker, host });
  log.info('worker ready', {
    name,
    platform: describeWorkerPlatform(platform),
    frontend: config.frontend,
    concurrency: config.execution.concurrency,
  });
  if (options.announce ?? true) {
    console.log(`larder worker ready: ${name} [${describeWorkerPlatform(platform)}]`);
    if (metrics !== null) console.log(`larder worker metrics on ${metrics.url}/metrics`);
  }
  return {
    name,
    worker,
    metricsUrl: metrics?.url ?? null,
    close: () => opened.dispose(),
  };
}

/**
 * The frontend must answer and let this worker write the action cache (GetCapabilities says so only to
 * callers with the `write` role): better to stop at start than to fail every action's upload.
 */
async function checkFrontend(frontend: ReturnType<typeof openFrontend>): Promise<void> {
  let capabilities;
  try {
    capabilities = await frontend.capabilities.getCapabilities(
      {},
      { metadata: frontend.metadata(), timeoutMs: 30_000 },
    );
  } catch (err) {
    throw new LarderError(
      'unavailable',
      `cannot reach the frontend ${frontend.url}: ${(err as { details?: string }).details ?? (err as Error).message}`,
    );
  }
  if (capabilities.cacheCapabilities?.actionCacheUpdateCapabilities?.updateEnabled !== true) {
    throw new LarderError(
      'permission_denied',
      `the frontend ${frontend.url} does not let this worker write (its credentials need the write role; see --frontend-credentials)`,
    );
  }
}

function normalArch(): string {
  const a = arch();
  return a === 'x64' ? 'amd64' : a;
}
