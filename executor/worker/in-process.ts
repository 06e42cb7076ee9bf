/**
 * The workers `larder executor` runs in its own process (the embedded default): they share the server's store
 * as their CAS and action cache, one input file cache, and one work folder, which is emptied of any earlier
 * run's action directories at start (a crashed server's leftovers would otherwise fill the disk).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { blobKey } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { ExecutionConfig } from '../../shared/config.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { describeWorkerPlatform, workerPlatform } from '../execution/platform.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';
import { writeActionResult } from '../services/action-cache.ts';
import { FileCache } from './file-cache.ts';
import { LocalRunner } from './local-runner.ts';
import { storeCas } from './store-cas.ts';
import { Worker } from './worker.ts';

/** A group of identical workers; `larder executor` makes one from its flags, tests may make several. */
export interface WorkerPool {
  /** Labels besides OSFamily and Arch (a configured Arch replaces the detected one). */
  labels: ReadonlyMap<string, readonly string[]>;
  workers: number;
  concurrency: number;
  /** Distinguishes pools in worker names; default: the pool's index. */
  name?: string;
}

/** stdout and stderr of one action, together, are cut here: enough for any compiler, bounded for a runaway. */
export const MAX_ACTION_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface InProcessWorkers {
  readonly workers: readonly Worker[];
  stop(): Promise<void>;
}

export async function startInProcessWorkers(options: {
  config: ExecutionConfig;
  pools: readonly WorkerPool[];
  store: BlobStore;
  scheduler: Scheduler;
  log: Logger;
}): Promise<InProcessWorkers> {
  const { config, store, log } = options;
  const { actionsDir, cache, user } = await openWorkArea(config, log);
  const runner = new LocalRunner();

  const workers: Worker[] = [];
  options.pools.forEach((pool, index) => {
    const platform = workerPlatform(pool.labels, ['local']);
    for (let i = 0; i < pool.workers; i++) {
      const name = `${hostname()}/${pool.name ?? index}/${i}`;
      workers.push(
        new Worker({
          name,
          scheduler: options.scheduler,
          platform,
          concurrency: pool.concurrency,
          log,
          environment: {
            casFor: (instance) => storeCas(store, instance),
            writeActionResult: (instance, digest, result) => writeActionResult(store, blobKey(instance, 'ac', digest.hash), result),
            cache,
            runner,
            actionsDir,
            user,
            maxOutputBytes: MAX_ACTION_OUTPUT_BYTES,
            log,
          },
        }),
      );
    }
    log.info('workers ready', { pool: pool.name ?? String(index), workers: pool.workers, concurrency: pool.concurrency, platform: describeWorkerPlatform(platform), runAs: config.runAs || 'self' });
  });
  await Promise.all(workers.map((worker) => worker.start()));
  return {
    workers,
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
    },
  };
}

/**
 * The work folder of one worker process: `actions/` emptied of a crashed run's leftovers (they would fill the
 * disk) and checked reachable by the user actions run as, and the input file cache in `inputs/`.
 */
export async function openWorkArea(config: Pick<ExecutionConfig, 'workDir' | 'inputCacheBytes' | 'runAs'>, log: Logger): Promise<{ actionsDir: string; cache: FileCache; user: { uid: number; gid: number } | null }> {
  const user = config.runAs === '' ? null : lookUpUser(config.runAs);
  const workDir = resolve(config.workDir);
  const actionsDir = join(workDir, 'actions');
  await mkdir(workDir, { recursive: true, mode: 0o755 });
  await rm(actionsDir, { recursive: true, force: true });
  await mkdir(actionsDir, { mode: 0o755 });
  if (user !== null) await checkReachable(actionsDir, user, config.runAs);
  const cache = await FileCache.open({ dir: join(workDir, 'inputs'), maxBytes: config.inputCacheBytes, log });
  return { actionsDir, cache, user };
}

/** uid and gid of a user name (or numeric id), through the system's user database. */
function lookUpUser(name: string): { uid: number; gid: number } {
  let entry: string;
  try {
    entry = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim();
  } catch {
    throw new LarderError('invalid_argument', `--run-as ${name}: no such user on this host`);
  }
  const [, , uid, gid] = entry.split(':');
  if (Number(uid) === 0) throw new LarderError('invalid_argument', `--run-as ${name}: that is root; actions must run unprivileged`);
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Actions run as `user`, so every folder above their directories must let that user through (a work folder
 * under root's 0700 home would not): say so at start rather than fail every action.
 */
async function checkReachable(dir: string, user: { uid: number; gid: number }, name: string): Promise<void> {
  for (let at = dir; ; at = dirname(at)) {
    const info = await stat(at);
    const searchable = info.uid === user.uid ? info.mode & 0o100 : info.gid === user.gid ? info.mode & 0o010 : info.mode & 0o001;
    if (!searchable) {
      throw new LarderError('invalid_argument', `--work-dir ${dir}: actions run as ${name}, who cannot enter ${at} (chmod o+x it, or choose another --work-dir)`);
    }
    if (at === dirname(at)) return;
  }
}
