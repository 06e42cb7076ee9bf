/**
 * The start-up step that makes this process execute: the scheduler (Redis with --queue redis://…, else in memory
 * when there are workers) and the in-process workers, each registered to be closed again.
 */
import type { ExecutorConfig } from '../config/executor-options.ts';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import type { ExecutionSource } from '../execution/metrics.ts';
import { MemoryScheduler } from '../scheduler/memory-scheduler.ts';
import { redactUrl } from '../scheduler/redis/connection.ts';
import { RedisScheduler } from '../scheduler/redis/redis-scheduler.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';
import { type InProcessWorkers, startInProcessWorkers, type WorkerPool } from '../worker/in-process.ts';
import type { WorkerOptions } from '../worker/worker.ts';
import { type DisposalStack, once } from './disposal-stack.ts';

/** The scheduler and this process's workers, and how to stop both (what the gRPC server's shutdown starts with). */
export interface Execution extends ExecutionSource {
  workers: InProcessWorkers | null;
  stop(): Promise<void>;
}

/**
 * The scheduler (Redis with --queue redis://…, else in memory when there are workers) and the in-process workers.
 * With a shared Redis queue this process executes even without workers of its own: it is a frontend of a fleet
 * whose workers (`larder worker`, other executors) take the jobs it queues. Null: no execution at all.
 */
export async function startExecution(
  options: {
    config: ExecutorConfig;
    pools: WorkerPool[];
    store: BlobStore;
    log: Logger;
    onFinished: WorkerOptions['onFinished'];
  },
  opened: DisposalStack,
): Promise<Execution | null> {
  const { config, pools, log } = options;
  const scheduler = await openScheduler(config, hasWorkers(pools), log);
  if (scheduler === null) return null;
  // Closing the scheduler comes first, however the workers are stopped: it ends queued operations (UNAVAILABLE)
  // and stops running ones, so the workers stop at once rather than after their actions.
  const closeScheduler = once(() => scheduler.close());
  opened.defer(closeScheduler);
  const workers = hasWorkers(pools)
    ? await startInProcessWorkers({ ...options, config: config.execution, scheduler })
    : null;
  const stop = once(async () => {
    await closeScheduler();
    await workers?.stop();
  });
  if (workers !== null) opened.defer(stop);
  return {
    scheduler,
    workers,
    stop,
  };
}

async function openScheduler(config: ExecutorConfig, withWorkers: boolean, log: Logger): Promise<Scheduler | null> {
  const { queue } = config.execution;
  if (queue === 'memory') return withWorkers ? new MemoryScheduler() : null;
  const scheduler = await RedisScheduler.open({
    url: queue,
    passwordFile: config.execution.queuePasswordFile,
    caPath: config.execution.queueCaPath,
    log,
    leaseMs: config.execution.queueLeaseMs,
  });
  log.info('queue ready', { queue: redactUrl(queue) });
  return scheduler;
}

export function hasWorkers(pools: readonly WorkerPool[]): boolean {
  return pools.some((pool) => pool.workers > 0);
}
