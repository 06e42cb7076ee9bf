/**
 * The `docker` runner: an action whose platform says `container-image=docker://IMAGE` runs in that image, in a
 * container of its own or, with `dockerReuse=True`, as an exec in a warm container (pool.ts). The image is made
 * ready once per image before the action's timeout starts (images.ts). An image that is absent and cannot be
 * pulled ends the action at once with exit 127 and a message naming it, as a program that cannot be started does.
 */
import { chmod, rm } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { LarderError } from '../../../shared/errors.ts';
import type { Logger } from '../../../shared/log.ts';
import { notStarted, type Runner, type RunOutcome, type RunRequest } from '../runner.ts';
import { type DockerLimits, removeOwnedContainers } from './container.ts';
import { EngineError, type DockerEngine } from './engine.ts';
import { attachExec, type AttachedExec, type ExecCommand } from './exec.ts';
import { ImageNotAvailable, Images } from './images.ts';
import { canClearSysvIpc } from './ipc.ts';
import { runOneShot } from './one-shot.ts';
import { WarmPool } from './pool.ts';
import { parseDockerSpec, type DockerSpec } from './spec.ts';
import { runWarm } from './warm-run.ts';

export interface DockerRunnerOptions {
  engine: DockerEngine;
  limits: DockerLimits;
  /** Where run-action makes per-action directories (mounted into warm containers). */
  actionsDir: string;
  /** A folder of the runner's own (warm containers' /tmp folders). */
  workDir: string;
  /** Warm containers at most, busy or idle, over all keys. */
  maxWarmContainers: number;
  /** A warm container unused this long is removed. */
  idleMs: number;
  /**
   * The work folder's owner id (worker/work-root.ts): containers are labelled with it, and those a crashed run
   * left are removed at start.
   */
  owner: string;
  log: Logger;
}

/** A warm container leased for a long-lived process (a persistent worker); see DockerRunner.leaseContainer. */
export interface ContainerLease {
  readonly containerId: string;
  /** `uid:gid` processes in it run as. */
  readonly user: string;
  /** Starts `argv` in the container with its stdio attached (see AttachedExec in exec.ts). */
  attach(command: {
    argv: readonly string[];
    env: Readonly<Record<string, string>>;
    cwd: string;
  }): Promise<AttachedExec>;
  /**
   * Gives the container back. reusable: cleaned and kept warm for later actions of the same key (only when every
   * process started in it has exited); otherwise removed, with everything in it, before this resolves.
   */
  release(reusable: boolean): Promise<void>;
}

export class DockerRunner implements Runner {
  readonly kind = 'docker' as const;
  private readonly images: Images;
  private readonly pool: WarmPool;

  constructor(private readonly options: DockerRunnerOptions) {
    this.images = new Images(options.engine);
    this.pool = new WarmPool({
      engine: options.engine,
      limits: options.limits,
      actionsDir: options.actionsDir,
      tmpRoot: join(options.workDir, 'tmp'),
      maxContainers: options.maxWarmContainers,
      idleMs: options.idleMs,
      owner: options.owner,
      log: options.log,
    });
  }

  /**
   * Checks the engine answers, removes the containers a crashed run of this work folder left (running actions,
   * warm containers, persistent workers in them), and closes the actions folder to listing (warm containers see
   * all of it).
   */
  async start(): Promise<void> {
    await this.options.engine.call('GET', '/_ping').catch((err: Error) => {
      throw new LarderError('unavailable', `--allow-docker: ${err.message}`);
    });
    const removed = await removeOwnedContainers(this.options.engine, this.options.owner);
    if (removed > 0) this.options.log.warn('removed containers a previous run left', { containers: removed });
    await chmod(this.options.actionsDir, 0o711);
    if (!canClearSysvIpc())
      this.options.log.warn(
        'dockerReuse: larder is not root, so it cannot clear System V IPC objects in a warm container between actions; each warm container serves one action and is removed',
      );
    // A crashed run's /tmp folders (its containers died with it, or are removed by their owner's engine).
    await rm(join(this.options.workDir, 'tmp'), { recursive: true, force: true });
  }

  async run(request: RunRequest): Promise<RunOutcome> {
    const startedAt = new Date();
    const spec = parseDockerSpec(request.options, request.user);
    const unavailable = await this.prepare(spec, request.signal);
    if (unavailable !== null) return notStarted(unavailable, startedAt);
    if (!spec.reuse) return this.oneShot(spec, request, startedAt);
    const rel = relative(this.options.actionsDir, request.execRoot);
    if (rel.startsWith('..') || isAbsolute(rel))
      throw new Error(`the exec root ${request.execRoot} is not under ${this.options.actionsDir}`);
    const container = await this.pool.acquire(spec, [], request.signal);
    let reusable = false;
    try {
      const ran = await runWarm(this.options.engine, container, this.options.limits, request);
      reusable = ran.reusable;
      return ran.outcome;
    } finally {
      await this.pool.release(container, reusable);
    }
  }

  /**
   * A warm container of the pool for `options` (the action's runner options: container-image, cache-silo-key,
   * dockerNetwork…), held until release. `mounts`: host folders to mount at the same path besides the actions
   * folder (a persistent worker's own directory); they are part of the pool key. The image is prepared first.
   */
  async leaseContainer(
    options: ReadonlyMap<string, string>,
    user: { uid: number; gid: number } | null,
    mounts: readonly string[] = [],
    signal?: AbortSignal,
  ): Promise<ContainerLease> {
    const spec = parseDockerSpec(new Map([...options, ['dockerReuse', 'True']]), user);
    const unavailable = await this.prepare(spec, signal ?? new AbortController().signal);
    if (unavailable !== null) throw new LarderError('invalid_argument', unavailable);
    const container = await this.pool.acquire(spec, mounts, signal);
    const engine = this.options.engine;
    let released = false;
    return {
      containerId: container.id,
      user: spec.user,
      attach: (command) => attachExec(engine, container.id, { ...command, user: spec.user } satisfies ExecCommand),
      release: async (reusable) => {
        if (released) return;
        released = true;
        await this.pool.release(container, reusable);
      },
    };
  }

  /** Containers alive and idle: for tests, the worker's status page and /metrics. */
  poolStats(): { live: number; idle: number } {
    return this.pool.stats();
  }

  /** Removes every container this runner started (the workers have stopped, so none is busy for long). */
  async close(): Promise<void> {
    await this.pool.close();
    this.options.engine.close();
  }

  /** null when the image is ready, else why it cannot be used. */
  private async prepare(spec: DockerSpec, signal: AbortSignal): Promise<string | null> {
    signal.throwIfAborted();
    const aborted = new Promise<never>((_, reject) =>
      signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
    );
    aborted.catch(() => undefined);
    try {
      await Promise.race([this.images.prepare(spec.image), aborted]);
      return null;
    } catch (err) {
      if (err instanceof ImageNotAvailable) return `larder: ${err.message}`;
      throw err;
    }
  }

  private async oneShot(spec: DockerSpec, request: RunRequest, startedAt: Date): Promise<RunOutcome> {
    try {
      return await runOneShot(this.options.engine, spec, this.options.limits, request, this.options.owner);
    } catch (err) {
      // Removed between preparation and use: prepare it again next time, and say which image.
      if (err instanceof EngineError && err.status === 404 && /no such image/i.test(err.message)) {
        this.images.forget(spec.image);
        return notStarted(
          `larder: the image ${spec.image} is no longer on this executor's Docker engine: ${err.message}`,
          startedAt,
        );
      }
      throw err;
    }
  }
}
