/**
 * What every worker needs on its host, whether it runs inside `larder executor` or as `larder worker`: the work
 * folder (per-action directories, checked reachable by the user actions run as), the input file cache, the runners
 * this host offers (local, and docker when enabled) and the remote persistent workers. Only storage differs between
 * the two, and it is passed per action (WorkerCas).
 *
 * A crashed run's leftovers are removed at start, before anything runs: its action and persistent-worker folders,
 * its action cgroups with whatever still runs in them, and its containers, found by the work folder's owner id
 * (work-root.ts). Sandboxed processes need no search: bubblewrap's --die-with-parent took them down with it.
 */
import { execFileSync } from 'node:child_process';
import { chown, mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { ExecutionConfig } from '../config/execution-options.ts';
import { LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { RunnerKind } from '../reapi/platform.ts';
import { DockerEngine, DockerRunner } from '../runner/docker/index.ts';
import { RememberedBlobs } from './remembered-blobs.ts';
import { FileCache } from './file-cache.ts';
import { FileSystemThread } from './file-system-thread.ts';
import { ActionFolders } from './action-folders.ts';
import { LocalRunner } from '../runner/local-runner.ts';
import { Bubblewrap, findBubblewrap, probeSandbox } from '../runner/sandbox/bubblewrap.ts';
import { type Cgroups, openCgroups } from '../runner/sandbox/cgroups.ts';
import { type Identities, sharedIdentity, uidRange } from '../runner/sandbox/identities.ts';
import { PersistentWorkers, type WorkerLauncher } from './persistent/persistent-workers.ts';
import { claimWorkRoot, type WorkRoot } from './work-root.ts';
import { spawnLocalWorker } from './persistent/worker-process.ts';
import type { ActionEnvironment } from './run-action.ts';
import type { Runner } from '../runner/runner.ts';

/**
 * Persistent worker slots: at most 4 processes per key (one tool rarely needs more on one host) and 32 in all,
 * retired after 10 idle minutes or 1,000 actions (tools that grow with every request get a fresh start).
 */
const PERSISTENT_WORKER_LIMITS = { maxPerKey: 4, maxTotal: 32, idleMs: 10 * 60_000, maxRequests: 1000 };

/** Action folders kept made ahead: enough for a burst of starts on a few slots; beyond it, one is made on the spot. */
const SPARE_ACTION_FOLDERS = 4;

/** stdout and stderr of one action, together, are cut here: enough for any compiler, bounded for a runaway. */
export const MAX_ACTION_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface WorkerHost {
  /** The runner kinds this host offers, for the workers' platform. */
  readonly runnerKinds: RunnerKind[];
  /** Remote persistent workers (null unless --persistent-workers names a runner). */
  readonly persistentWorkers: PersistentWorkers | null;
  /** What this host has lately seen in each instance's CAS: every worker's CAS goes through it (remembered-blobs.ts). */
  readonly rememberedBlobs: RememberedBlobs;
  /** Everything runAction needs except what depends on where blobs live. */
  readonly environment: Omit<ActionEnvironment, 'cas' | 'workerName' | 'actionCache'>;
  /** The input cache, docker containers and persistent workers now: the worker's status page and /metrics. */
  stats(): WorkerHostStats;
  close(): Promise<void>;
}

export interface WorkerHostStats {
  inputCache: ReturnType<FileCache['stats']>;
  /** null: no docker runner. */
  docker: { live: number; idle: number } | null;
  /** null: no persistent workers enabled. */
  persistentWorkers: { live: number; started: number; requests: number } | null;
}

export async function openWorkerHost(
  config: Omit<ExecutionConfig, 'workers' | 'queue' | 'queueLeaseMs'>,
  log: Logger,
): Promise<WorkerHost> {
  const workDir = resolve(config.workDir);
  await mkdir(workDir, { recursive: true, mode: 0o755 });
  const root = await claimWorkRoot(workDir);
  try {
    return await openClaimed(config, log, root);
  } catch (err) {
    await root.release();
    throw err;
  }
}

async function openClaimed(
  config: Omit<ExecutionConfig, 'workers' | 'queue' | 'queueLeaseMs'>,
  log: Logger,
  root: WorkRoot,
): Promise<WorkerHost> {
  const identities = actionIdentities(config);
  const workDir = resolve(config.workDir);
  const actionsDir = join(workDir, 'actions');
  const removedDir = join(workDir, 'removed');
  await rm(actionsDir, { recursive: true, force: true });
  await rm(removedDir, { recursive: true, force: true });
  await rm(join(workDir, 'workers'), { recursive: true, force: true });
  // Other slots' uids may pass through to their own folders (0711), never list what is there.
  await mkdir(actionsDir, { mode: 0o711 });
  // Finished actions' folders wait here to be deleted, out of every slot uid's reach (0700).
  await mkdir(removedDir, { mode: 0o700 });
  for (const identity of identities.all) await checkReachable(actionsDir, identity, runAsName(config));
  const cache = await FileCache.open({ dir: join(workDir, 'inputs'), maxBytes: config.inputCacheBytes, log });
  // Two threads: a deletion can sleep in the kernel for milliseconds (a sandboxed exec root's rmdir), and staging
  // must not wait behind it.
  const remover = new FileSystemThread();
  const stagingThread = new FileSystemThread();
  // Spare action folders are made on the removals' thread: background work too, kept off staging's.
  const actionFolders = new ActionFolders(actionsDir, remover, SPARE_ACTION_FOLDERS);

  const sandbox = await openSandbox(config, actionsDir, identities, log);
  const cgroups = await openActionCgroups(root.owner, log);
  const local = new LocalRunner({
    sandbox,
    cgroups,
    limits: { memoryBytes: config.actionMemoryBytes, pids: config.actionPids },
    allowNetwork: config.allowNetwork,
  });
  const runners = new Map<RunnerKind, Runner>([['local', local]]);
  const docker = config.allowDocker ? await startDockerRunner(config, actionsDir, root.owner, log) : null;
  if (docker !== null) runners.set('docker', docker);
  const persistentWorkers =
    config.persistentWorkers.size === 0
      ? null
      : new PersistentWorkers({
          enabled: config.persistentWorkers,
          dir: join(workDir, 'workers'),
          identities,
          ...PERSISTENT_WORKER_LIMITS,
          launchers: {
            local: async (spec) => spawnLocalWorker(spec, sandbox),
            ...(docker === null ? {} : { docker: containerLauncher(docker, join(workDir, 'workers')) }),
          },
          log,
        });
  return {
    runnerKinds: [...runners.keys()],
    persistentWorkers,
    rememberedBlobs: new RememberedBlobs(),
    environment: {
      cache,
      runners,
      defaultContainerImage: config.docker.defaultImage,
      persistentWorkers,
      actionFolders,
      removedDir,
      stagingThread,
      identities,
      maxOutputBytes: MAX_ACTION_OUTPUT_BYTES,
      inputLimits: config.inputLimits,
      log,
    },
    stats: () => ({
      inputCache: cache.stats(),
      docker: docker?.poolStats() ?? null,
      persistentWorkers: persistentWorkers?.stats() ?? null,
    }),
    async close() {
      await persistentWorkers?.close();
      await docker?.close(); // every container it started, warm ones included
      local.close();
      actionFolders.close();
      await remover.close();
      await stagingThread.close();
      await root.release();
    },
  };
}

/**
 * Persistent workers in containers: each worker process is a long-lived attached exec in a kept (dockerReuse)
 * container of its own, with the workers' folder mounted at the same path, so actions staged into a worker's
 * directory on the host are where the worker reads them. The container goes with the worker: a worker that is
 * retired, crashed or killed takes its container (and anything left running in it) along.
 */
function containerLauncher(docker: DockerRunner, workersDir: string): WorkerLauncher {
  return async (spec) => {
    const lease = await docker.leaseContainer(spec.job.platform.options, spec.user, [workersDir]);
    try {
      const exec = await lease.attach({ argv: spec.argv, env: spec.env, cwd: spec.cwd });
      return {
        stdin: exec.stdin,
        stdout: exec.stdout,
        stderr: exec.stderr,
        exited: exec.exited.then(() => undefined),
        async kill() {
          await exec.kill();
          await lease.release(false);
        },
      };
    } catch (err) {
      await lease.release(false);
      throw err;
    }
  };
}

/** The docker runner on --docker-host, checked to answer at start (a wrong socket fails here, not per action). */
async function startDockerRunner(
  config: Pick<ExecutionConfig, 'docker' | 'workDir'>,
  actionsDir: string,
  owner: string,
  log: Logger,
): Promise<DockerRunner> {
  const { docker } = config;
  const runner = new DockerRunner({
    engine: DockerEngine.fromHost(docker.host),
    limits: { memoryBytes: docker.memoryBytes, pids: docker.pids },
    actionsDir,
    workDir: join(resolve(config.workDir), 'docker'),
    maxWarmContainers: docker.poolSize,
    idleMs: docker.idleMs,
    owner,
    log,
  });
  await runner.start();
  if (docker.defaultImage !== null)
    log.info('actions that name no container-image run in the default image', { image: docker.defaultImage });
  return runner;
}

/** Who actions run as: a uid per slot from --run-as-uids, one --run-as user for all, or (not root) larder itself. */
export function actionIdentities(config: Pick<ExecutionConfig, 'runAs' | 'runAsUids'>): Identities {
  if (config.runAs !== '') return sharedIdentity(lookUpUser(config.runAs));
  if (config.runAsUids !== null && process.getuid?.() === 0)
    return uidRange(config.runAsUids.first, config.runAsUids.last);
  return sharedIdentity(null);
}

function runAsName(config: Pick<ExecutionConfig, 'runAs' | 'runAsUids'>): string {
  if (config.runAs !== '') return config.runAs;
  return config.runAsUids === null ? 'larder' : `uid ${config.runAsUids.first}`;
}

/** The sandbox, checked to work here as actions will use it; null only when the operator turned it off. */
async function openSandbox(
  config: Pick<ExecutionConfig, 'sandbox' | 'secretPaths'>,
  actionsDir: string,
  identities: Identities,
  log: Logger,
): Promise<Bubblewrap | null> {
  if (!config.sandbox) {
    log.warn(
      'THE ACTION SANDBOX IS OFF (--sandbox off): actions see the whole host file system, its network and its ' +
        'processes; an action can read what other actions and persistent workers read and write, and processes ' +
        'it leaves behind are killed only through its process group and cgroup. Use it only when every client ' +
        'is trusted.',
    );
    return null;
  }
  const bwrap = findBubblewrap();
  if (bwrap === null) {
    throw new LarderError(
      'invalid_argument',
      'the action sandbox needs bubblewrap (apt-get install bubblewrap); only if every client is trusted: --sandbox off',
    );
  }
  const sandbox = new Bubblewrap(
    bwrap,
    config.secretPaths.map((path) => resolve(path)),
  );
  const probe = join(actionsDir, 'sandbox-probe');
  await mkdir(probe, { mode: 0o700 });
  const identity = identities.acquire();
  try {
    if (identity !== null) await chown(probe, identity.uid, identity.gid);
    probeSandbox(sandbox, probe, identity);
  } finally {
    identities.release(identity);
    await rm(probe, { recursive: true, force: true });
  }
  return sandbox;
}

/**
 * Where action cgroups go: a subtree named after the work folder's owner, so a crashed run's groups are found (and
 * swept) by the next; without (not root, no hierarchy) the limits cannot hold, and the log says so.
 */
async function openActionCgroups(owner: string, log: Logger): Promise<Cgroups | null> {
  const cgroups = await openCgroups(`larder-${owner}`);
  if ('unavailable' in cgroups) {
    log.warn('no cgroup for actions: --action-memory and --action-pids are not enforced', {
      reason: cgroups.unavailable,
    });
    return null;
  }
  return cgroups;
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
  if (Number(uid) === 0)
    throw new LarderError('invalid_argument', `--run-as ${name}: that is root; actions must run unprivileged`);
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Actions run as `user`, so every folder above their directories must let that user through (a work folder
 * under root's 0700 home would not): say so at start rather than fail every action.
 */
async function checkReachable(dir: string, user: { uid: number; gid: number }, name: string): Promise<void> {
  for (let at = dir; ; at = dirname(at)) {
    const info = await stat(at);
    const searchable =
      info.uid === user.uid ? info.mode & 0o100 : info.gid === user.gid ? info.mode & 0o010 : info.mode & 0o001;
    if (!searchable) {
      throw new LarderError(
        'invalid_argument',
        `--work-dir ${dir}: actions run as ${name}, who cannot enter ${at} (chmod o+x it, or choose another --work-dir)`,
      );
    }
    if (at === dirname(at)) return;
  }
}
