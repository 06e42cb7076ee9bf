/**
 * The workers `larder executor` runs in its own process (the embedded default): they share the server's store
 * as their CAS and action cache, and one worker host (work folder, input cache, runners, persistent workers).
 */
import { hostname } from 'node:os';
import { blobKey, type Digest } from '../../shared/digest.ts';
import type { ActionResult } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { ExecutionConfig } from '../config/execution-options.ts';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { describeWorkerPlatform, workerPlatform } from '../reapi/platform.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';
import { ActionCacheWrites } from '../services/action-cache-writes.ts';
import type { PersistentWorkers } from './persistent/persistent-workers.ts';
import { storeCas } from './store-cas.ts';
import { Worker, type WorkerOptions } from './worker.ts';
import { openWorkerHost } from './worker-host.ts';

/** A group of identical workers; `larder executor` makes one from its flags, tests may make several. */
export interface WorkerPool {
  /** Labels besides OSFamily and Arch (a configured Arch replaces the detected one). */
  labels: ReadonlyMap<string, readonly string[]>;
  workers: number;
  concurrency: number;
  /** Distinguishes pools in worker names; default: the pool's index. */
  name?: string;
}

export interface InProcessWorkers {
  readonly workers: readonly Worker[];
  /** Remote persistent workers (null unless --persistent-workers names a runner). */
  readonly persistentWorkers: PersistentWorkers | null;
  /** The action cache writes the workers have under way, for this process's lookups to wait for. */
  readonly actionCacheWrites: ActionCacheWrites;
  stop(): Promise<void>;
}

export async function startInProcessWorkers(options: {
  config: ExecutionConfig;
  pools: readonly WorkerPool[];
  store: BlobStore;
  scheduler: Scheduler;
  log: Logger;
  /** Told of every finished action (metrics). */
  onFinished?: WorkerOptions['onFinished'];
}): Promise<InProcessWorkers> {
  const { config, store, log } = options;
  const host = await openWorkerHost(config, log);
  const actionCacheWrites = new ActionCacheWrites(store);
  const actionCache = {
    write: (instance: string, digest: Digest, result: ActionResult) =>
      actionCacheWrites.write(blobKey(instance, 'ac', digest.hash), result),
    readsWaitForWrites: true,
  };
  const workers: Worker[] = [];
  options.pools.forEach((pool, index) => {
    const platform = workerPlatform(pool.labels, host.runnerKinds);
    for (let i = 0; i < pool.workers; i++) {
      const name = `${hostname()}/${pool.name ?? index}/${i}`;
      workers.push(
        new Worker({
          name,
          scheduler: options.scheduler,
          platform,
          concurrency: pool.concurrency,
          log,
          onFinished: options.onFinished,
          environment: {
            ...host.environment,
            casFor: (instance) => host.rememberedBlobs.wrap(storeCas(store, instance), instance),
            actionCache,
          },
        }),
      );
    }
    log.info('workers ready', {
      pool: pool.name ?? String(index),
      workers: pool.workers,
      concurrency: pool.concurrency,
      platform: describeWorkerPlatform(platform),
      runAs: config.runAs || 'self',
    });
  });
  await Promise.all(workers.map((worker) => worker.start()));
  return {
    workers,
    persistentWorkers: host.persistentWorkers,
    actionCacheWrites,
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      await host.close();
    },
  };
}
