/**
 * Remote persistent workers (EngFlow's scheme): an action whose platform sets `persistentWorkerKey`, on a runner the
 * server enabled them for (`--persistent-workers`), is staged into the directory of a pooled worker slot and sent
 * to a long-running worker process as a WorkRequest instead of starting its command line afresh.
 *
 * Inputs are staged into the worker's own directory (cleared before each action) rather than a `sandbox_dir`:
 * workers written for Bazel's local worker strategy resolve paths against their working directory, and only
 * recent multiplex-sandboxing workers honour `sandbox_dir`. Actions that cannot be work requests (no flag file, a
 * working directory other than the root) run one-shot as usual.
 */
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatDigest } from '../../../shared/digest.ts';
import type { Logger } from '../../../shared/log.ts';
import type { RunnerKind } from '../../reapi/platform.ts';
import type { ExecutionJob } from '../../scheduler/scheduler.ts';
import type { RunOutcome, RunRequest } from '../../runner/runner.ts';
import type { Identities, Identity } from '../../runner/sandbox/identities.ts';
import { expandFlagFiles, splitCommandLine, type WorkerCommandLine } from './command-line.ts';
import type { WorkerProtocol } from './framing.ts';
import { PersistentWorkerPool, poolKey, type PersistentWorkerSlot } from './pool.ts';
import { type ProtoReader, ToolInputFinder, type ToolInput } from './tool-inputs.ts';
import { type WorkerChannel, WorkerFailure, WorkerProcess } from './worker-process.ts';

/** Where an action is staged and how its command runs there. */
export interface ActionWorkspace {
  readonly execRoot: string;
  /** Who the action's processes run as and who owns its directories (null: the server's own user). */
  readonly identity: Identity | null;
  /**
   * Nothing runs as `identity` until this workspace's command starts (a one-shot slot's own uid), so staging may hand
   * each directory over as it makes it. Otherwise root must not work inside folders that uid already owns: a
   * process of it (a warm persistent worker, another action of a shared user) could swap a folder for a symlink and
   * turn root's next link or mkdir somewhere else; the directories are handed over once staging is done.
   */
  readonly handOverWhileStaging: boolean;
  run(request: Omit<RunRequest, 'execRoot' | 'options' | 'user'>): Promise<RunOutcome>;
  /** Gives the place back (a worker slot stays warm); outputs must have been collected. */
  close(): Promise<void>;
}

/** Starts a worker process for a slot: a local process, or (docker runner) an exec in a kept container. */
export type WorkerLauncher = (spec: {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  user: Identity | null;
  job: ExecutionJob;
}) => Promise<WorkerChannel>;

export interface PersistentWorkersOptions {
  /** Runners whose actions may use persistent workers. */
  enabled: ReadonlySet<RunnerKind>;
  dir: string;
  /** Each worker process runs as a uid of its own for its whole life (see identities.ts). */
  identities: Identities;
  maxPerKey: number;
  maxTotal: number;
  idleMs: number;
  maxRequests: number;
  launchers: Partial<Record<RunnerKind, WorkerLauncher>>;
  log: Logger;
}

export class PersistentWorkers {
  private readonly pool: PersistentWorkerPool;
  private readonly finder = new ToolInputFinder();
  /** Actions answered by a persistent worker, for tests and logs. */
  requests = 0;

  constructor(private readonly options: PersistentWorkersOptions) {
    this.pool = new PersistentWorkerPool({ ...options });
  }

  stats() {
    return { ...this.pool.stats(), requests: this.requests };
  }

  /** The workspace of a persistent worker for `job`, or null when the job runs one-shot. */
  async open(job: ExecutionJob, cas: ProtoReader, signal: AbortSignal): Promise<ActionWorkspace | null> {
    const options = job.platform.options;
    const workerKey = options.get('persistentWorkerKey') ?? '';
    if (workerKey === '') return null;
    // The frontend has refused impossible combinations (prepare-job.ts): a container image comes with dockerReuse.
    const image = options.get('container-image') ?? '';
    const protocol: WorkerProtocol = options.get('persistentWorkerProtocol') === 'json' ? 'json' : 'proto';
    const launcher = this.options.launchers[job.platform.runner];
    if (!this.options.enabled.has(job.platform.runner) || launcher === undefined) return null;
    const commandLine = splitCommandLine(job.command.arguments);
    if (commandLine === null || job.command.workingDirectory !== '') return null;

    const root = job.action.inputRootDigest!;
    const files = await this.finder.files(cas, { hash: root.hash, sizeBytes: Number(root.sizeBytes) });
    const tools = this.finder.toolInputs(files, commandLine.startup);
    const env = job.command.environmentVariables.map((v) => [v.name, v.value] as const);
    const key = poolKey({
      persistentWorkerKey: workerKey,
      siloKey: options.get('cache-silo-key') ?? '',
      containerImage: image,
      protocol,
      startup: commandLine.startup,
      env,
      toolInputs: tools.map((t) => formatDigest(t.digest)),
    });
    const slot = await this.pool.acquire(key, affinityHint(job)!, signal);
    try {
      await clear(slot.dir);
    } catch (err) {
      await this.pool.release(slot);
      throw err;
    }
    return {
      execRoot: slot.dir,
      identity: slot.identity,
      handOverWhileStaging: false,
      run: (request) =>
        this.run(slot, { job, commandLine, protocol, files, env: Object.fromEntries(env), launcher }, request),
      close: () => this.pool.release(slot),
    };
  }

  /** Whether this worker holds a warm process for actions like `job` (the scheduler's affinity hint). */
  isWarmFor(job: ExecutionJob): boolean {
    const hint = affinityHint(job);
    return hint !== null && this.pool.hasWarm(hint);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private async run(
    slot: PersistentWorkerSlot,
    plan: {
      job: ExecutionJob;
      commandLine: WorkerCommandLine;
      protocol: WorkerProtocol;
      files: ToolInput[];
      env: Record<string, string>;
      launcher: WorkerLauncher;
    },
    request: Omit<RunRequest, 'execRoot' | 'options' | 'user'>,
  ): Promise<RunOutcome> {
    const startedAt = new Date();
    const args = await expandFlagFiles(plan.commandLine.flagFiles, request.cwd);
    // Bazel sends each input's digest as the bytes of its hex SHA-256; workers use it as an opaque fingerprint.
    const inputs = plan.files.map((f) => ({ path: f.path, digest: new TextEncoder().encode(f.digest.hash) }));
    const outcome = (fields: Partial<RunOutcome>): RunOutcome => ({
      exitCode: 1,
      signal: null,
      timedOut: false,
      cancelled: false,
      startError: null,
      outputTruncated: false,
      startedAt,
      endedAt: new Date(),
      ...fields,
    });

    for (let attempt = 1; ; attempt++) {
      if (slot.process === null || !slot.process.usable) {
        await slot.process?.kill();
        const channel = await plan.launcher({
          argv: [...plan.commandLine.startup, '--persistent_worker'],
          cwd: request.cwd,
          env: plan.env,
          user: slot.identity,
          job: plan.job,
        });
        this.pool.recordStart(slot, new WorkerProcess(channel, plan.protocol));
        this.options.log.info('persistent worker started', {
          slot: slot.id,
          key: slot.key.slice(0, 12),
          argv: plan.commandLine.startup.join(' '),
        });
      }
      const worker = slot.process!;
      try {
        const response = await worker.request({ arguments: args, inputs }, request.timeoutMs, request.signal);
        this.requests++;
        await writeFile(request.stderrPath, response.output.slice(0, request.maxOutputBytes));
        return outcome({
          exitCode: response.exitCode,
          outputTruncated: response.output.length > request.maxOutputBytes,
        });
      } catch (err) {
        if (!(err instanceof WorkerFailure)) throw err;
        if (err.kind === 'timeout') return outcome({ timedOut: true, signal: 'SIGKILL' });
        if (err.kind === 'cancelled') return outcome({ cancelled: true, signal: 'SIGKILL' });
        this.options.log.warn('persistent worker failed', {
          slot: slot.id,
          attempt,
          reason: err.message,
          stderr: worker.stderr().slice(-500),
        });
        // A crash or garbage may be the worker's, not the action's: one more try on a fresh process.
        if (attempt < 2) continue;
        const message = `larder: the persistent worker failed twice (${err.message}); its stderr ends with:\n${worker.stderr().slice(-4000)}`;
        await writeFile(request.stderrPath, message);
        return outcome({ exitCode: 1 });
      }
    }
  }
}

/**
 * What a scheduler can tell of a job's persistent worker without reading its inputs: the client's key and silo.
 * Null for jobs that use no persistent worker.
 */
export function affinityHint(job: ExecutionJob): string | null {
  const key = job.platform.options.get('persistentWorkerKey') ?? '';
  return key === '' ? null : `${key}\u0000${job.platform.options.get('cache-silo-key') ?? ''}`;
}

/** Empties a worker's directory, keeping the directory itself (the worker process's working directory). */
async function clear(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}
