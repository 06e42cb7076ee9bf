/**
 * One action on a worker, start to finish: take a workspace (a fresh directory run by the runner the platform
 * names, or a persistent worker's slot), stage the input root into it, prepare output parents, run the command,
 * upload outputs, stdout and stderr, write the action cache (exit code 0 and cacheable only), and clean up.
 * Whatever fails becomes an ExecuteResponse status the client can act on; nothing here throws past `runAction`.
 */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { createHash } from 'node:crypto';
import { readFile, rename } from 'node:fs/promises';
import { constants } from 'node:os';
import { basename, join } from 'node:path';
import type { Digest } from '../../shared/digest.ts';
import { isLarderError, LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import {
  type ActionResult,
  ActionResultSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
  type ExecutedActionMetadata,
  ExecutedActionMetadataSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestMessage } from '../reapi/digests.ts';
import { callStatus, Code } from '../reapi/grpc-status.ts';
import { MissingBlobsError, missingBlobsResponse } from '../reapi/missing-blobs.ts';
import { type RunnerKind, withDefaultImage } from '../reapi/platform.ts';
import type { ExecutionJob } from '../scheduler/scheduler.ts';
import type { WorkerCas } from './cas.ts';
import { type CollectedOutputs, collectOutputs, prepareOutputs } from './collect-outputs.ts';
import type { FileCache } from './file-cache.ts';
import type { ActionFolders } from './action-folders.ts';
import { type FileSystemThread, throwIfStopped } from './file-system-thread.ts';
import type { ActionWorkspace, PersistentWorkers } from './persistent/persistent-workers.ts';
import type { Runner, RunOutcome } from '../runner/runner.ts';
import type { Identities, Identity } from '../runner/sandbox/identities.ts';
import { type InputLimits, stageInputs } from './stage-inputs.ts';
import { ActionTimeoutError, startDeadline } from './deadline.ts';
import { preciseTimestamp } from './precise-wall-clock.ts';

/** Folders chowned per request to the file-system thread. */
const HAND_OVER_BATCH = 512;

export interface ActionEnvironment {
  /** This worker's name, reported in ExecutedActionMetadata.worker. */
  workerName: string;
  cas: WorkerCas;
  /** Where successful, cacheable results go. */
  actionCache: ActionCacheWriter;
  cache: FileCache;
  /** The runners this worker has, by kind; the job's platform says which it needs (the scheduler checked it is here). */
  runners: ReadonlyMap<RunnerKind, Runner>;
  /** `docker://IMAGE` that actions naming no container-image run in (--default-container-image); null: none. */
  defaultContainerImage: string | null;
  /** Remote persistent workers, when the server enabled them for some runner. */
  persistentWorkers: PersistentWorkers | null;
  /** Fresh per-action folders, made ahead in the actions folder (emptied at start by the worker). */
  actionFolders: ActionFolders;
  /**
   * Where a finished action's directory is moved (one rename) before its answer goes out, to be deleted after it;
   * only the worker's user may enter it. Emptied at start by the worker.
   */
  removedDir: string;
  /** Where staging makes folders, symlinks and links in batches (file-system-thread.ts). */
  stagingThread: FileSystemThread;
  /** Who each one-shot action runs as (a uid of its own per slot when larder is root), owning its directories. */
  identities: Identities;
  /** stdout and stderr together are cut at this many bytes. */
  maxOutputBytes: number;
  /** What one action's input root may stage (--max-input-files, --max-input-dirs, --max-input-bytes). */
  inputLimits: InputLimits;
  log: Logger;
}

/** Where a worker writes the results it may cache. */
export interface ActionCacheWriter {
  /** Writes a successful, cacheable result to the action cache of `instance`. */
  write(instance: string, actionDigest: Digest, result: ActionResult): Promise<void>;
  /**
   * Whether every read of that action cache a client can make once answered waits for a write under way (the
   * services of the worker's own process: action-cache-writes.ts). Then the answer goes out first and the write
   * follows it; else the answer waits for the write, so that a client answered finds the result cached.
   */
  readsWaitForWrites: boolean;
}

/** What runAction gives: the answer, and what follows it once it has gone out. */
export interface ActionRun {
  response: ExecuteResponse;
  /**
   * Waits for the action cache write the answer did not wait for, and deletes what the action left; never rejects
   * (a failure is logged: the client has its result either way).
   */
  finish(): Promise<void>;
}

export async function runAction(
  claimed: ExecutionJob,
  env: ActionEnvironment,
  signal: AbortSignal,
): Promise<ActionRun> {
  const job = { ...claimed, platform: withDefaultImage(claimed.platform, env.defaultContainerImage) };
  const metadata = create(ExecutedActionMetadataSchema, {
    worker: env.workerName,
    queuedTimestamp: timestampFromDate(job.queuedAt),
    workerStartTimestamp: now(),
  });
  const leftovers: Leftovers = { dir: null, movedOut: null, cacheWrite: null };
  const identity: { held: Identity | null } = { held: null };
  let response: ExecuteResponse;
  try {
    response = await execute(job, env, signal, metadata, leftovers, identity);
  } catch (err) {
    // A cancellation can land in any phase (staging, upload); whatever it interrupted, it is the answer.
    response = signal.aborted ? create(ExecuteResponseSchema, { status: statusOf(signal.reason) }) : failure(err, job);
  } finally {
    metadata.workerCompletedTimestamp = now();
  }
  const dir = leftovers.dir;
  // Usually under way already, since the outputs were read (moveOut).
  const moved = await (leftovers.movedOut ?? moveOut(env, dir));
  // Only now, with nothing of the action running and its files out of reach, may another slot have its uid.
  if (moved !== dir) env.identities.release(identity.held);
  const removeFiles = async () => {
    if (moved === null) return;
    // With a spare folder made in its place in the same request (action-folders.ts).
    await env.actionFolders
      .retire(moved)
      .catch((err: Error) => env.log.warn('could not remove an action directory', { dir: moved, error: err.message }));
    if (moved === dir) env.identities.release(identity.held);
  };
  return {
    response,
    finish: async () => {
      await Promise.all([leftovers.cacheWrite, removeFiles()]);
    },
  };
}

/**
 * What runAction finishes once the answer is out: the action's folder (null until taken), its move out of the slot's
 * reach once started (moveOut), and the action cache write the answer does not wait for
 * (ActionCacheWriter.readsWaitForWrites), once started.
 */
interface Leftovers {
  dir: string | null;
  movedOut: Promise<string | null> | null;
  cacheWrite: Promise<void> | null;
}

/**
 * Moves a finished action's folder where no slot's uid can reach it, and resolves to where it is now: the removed
 * folder; the folder itself when it could not be moved (it is deleted in place, and its uid given back only after
 * that); null when there is nothing (left) to delete. The runner has already waited for the command's whole
 * process group, so nothing writes here any more. Deleting an action's files takes a system call per file (about
 * 3 ms for a trivial action's 25); one rename takes them out of the slot's reach now, and the deletion waits until
 * the answer is out. Never rejects.
 */
function moveOut(env: ActionEnvironment, dir: string | null): Promise<string | null> {
  if (dir === null) return Promise.resolve(null);
  const removed = join(env.removedDir, basename(dir));
  return rename(dir, removed).then(
    () => removed,
    (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : dir),
  );
}

async function execute(
  job: ExecutionJob,
  env: ActionEnvironment,
  signal: AbortSignal,
  metadata: ExecutedActionMetadata,
  leftovers: Leftovers,
  identity: { held: Identity | null },
): Promise<ExecuteResponse> {
  const { command, action } = job;
  // The action's own folder holds its captured stdout and stderr, whichever workspace it runs in. Other slots'
  // uids may pass through it (0711) but not list it; its exec root is the slot's own (0700), left empty when a
  // persistent worker runs the action. Made ahead (action-folders.ts).
  const dir = await env.actionFolders.take();
  leftovers.dir = dir;
  const workspace =
    (await env.persistentWorkers?.open(job, env.cas, signal)) ?? (await oneShotWorkspace(job, env, dir, identity));
  let outcome: RunOutcome;
  let outputs: CollectedOutputs | null = null;
  try {
    const { execRoot } = workspace;
    metadata.inputFetchStartTimestamp = now();
    const inputRoot = job.action.inputRootDigest!;
    // Staging counts against the action's timeout; the run gets what is left (deadline.ts).
    const deadline = startDeadline(job.timeoutMs, signal);
    // Where it is safe (see handOverWhileStaging), the input directories go to the slot's uid in staging's own
    // batches, as they are made: no round trip of their own afterwards.
    const ownerWhileStaging = workspace.handOverWhileStaging ? workspace.identity : null;
    const staged = await stageInputs({
      cas: env.cas,
      cache: env.cache,
      rootDigest: { hash: inputRoot.hash, sizeBytes: Number(inputRoot.sizeBytes) },
      execRoot,
      limits: env.inputLimits,
      thread: env.stagingThread,
      owner: ownerWhileStaging,
      signal: deadline.signal,
    }).finally(deadline.stop);
    const spec = {
      execRoot,
      workingDirectory: command.workingDirectory,
      outputPaths: command.outputPaths,
      outputFiles: command.outputFiles,
      outputDirectories: command.outputDirectories,
    };
    const created = await prepareOutputs(spec);
    const toHandOver = ownerWhileStaging === null ? [...staged.createdDirectories, ...created] : created;
    if (workspace.identity !== null && toHandOver.length > 0)
      await handOver(env.stagingThread, toHandOver, workspace.identity);
    metadata.inputFetchCompletedTimestamp = now();

    metadata.executionStartTimestamp = now();
    outcome = await workspace.run({
      argv: command.arguments,
      env: Object.fromEntries(command.environmentVariables.map((v) => [v.name, v.value])),
      cwd: join(execRoot, command.workingDirectory),
      timeoutMs: deadline.remainingMs(),
      signal,
      stdoutPath: join(dir, 'stdout'),
      stderrPath: join(dir, 'stderr'),
      maxOutputBytes: env.maxOutputBytes,
    });
    metadata.executionCompletedTimestamp = now();
    metadata.outputUploadStartTimestamp = now();
    if (!outcome.timedOut && !outcome.cancelled && outcome.startError === null)
      outputs = await collectOutputs({ cas: env.cas, ...spec });
  } finally {
    await workspace.close();
  }

  const result = create(ActionResultSchema, { exitCode: outcome.exitCode });
  if (outputs !== null) Object.assign(result, outputs);
  const stderrPrefix = outcome.startError === null ? '' : `${outcome.startError}\n`;
  result.stdoutDigest = await uploadOutput(env.cas, join(dir, 'stdout'), '', outcome.outputBytes?.stdout);
  result.stderrDigest = await uploadOutput(env.cas, join(dir, 'stderr'), stderrPrefix, outcome.outputBytes?.stderr);
  // Nothing reads the folder from here on: it moves out meanwhile.
  leftovers.movedOut = moveOut(env, dir);
  metadata.outputUploadCompletedTimestamp = now();
  metadata.workerCompletedTimestamp = now();
  result.executionMetadata = metadata;

  if (outcome.cancelled) return create(ExecuteResponseSchema, { result, status: statusOf(signal.reason) });
  if (outcome.timedOut) {
    return create(ExecuteResponseSchema, {
      result,
      status: {
        code: Code.DEADLINE_EXCEEDED,
        message: `the action ran past its timeout of ${job.timeoutMs / 1000} s and was killed`,
      },
      message: `larder: the action was killed after ${job.timeoutMs / 1000} s (its timeout)`,
    });
  }
  if (outcome.outputError) {
    // What the command wrote could not all be kept (a full work disk): an empty or cut stdout is not its result.
    return create(ExecuteResponseSchema, {
      result,
      status: {
        code: Code.RESOURCE_EXHAUSTED,
        message: `the worker could not store the action's output (${outcome.outputError}); retry elsewhere`,
      },
    });
  }
  if (outcome.exitCode === 0 && !action.doNotCache) {
    const written = env.actionCache.write(job.instance, job.actionDigest, result);
    if (!env.actionCache.readsWaitForWrites) await written;
    else {
      // Caught at once: the answer goes out meanwhile, and nothing else would hear of a failure.
      leftovers.cacheWrite = written.catch((err: Error) =>
        env.log.warn(
          'could not write an action result to the action cache (its client has it; the next build runs it)',
          {
            action: job.actionDigest.hash,
            error: err.message,
          },
        ),
      );
    }
  }
  return create(ExecuteResponseSchema, { result, status: { code: Code.OK }, message: describeFailure(outcome) });
}

/**
 * A fresh directory of this action's own, run by the runner the job's platform names, as a uid of its own; the
 * directory is removed and the uid given back by runAction.
 */
async function oneShotWorkspace(
  job: ExecutionJob,
  env: ActionEnvironment,
  dir: string,
  identity: { held: Identity | null },
): Promise<ActionWorkspace> {
  const runner = env.runners.get(job.platform.runner);
  if (runner === undefined)
    throw new LarderError('invalid_argument', `this worker has no ${job.platform.runner} runner`);
  const execRoot = join(dir, 'root');
  identity.held = env.identities.acquire();
  return {
    execRoot,
    identity: identity.held,
    handOverWhileStaging: env.identities.exclusive,
    run: (request) => runner.run({ ...request, execRoot, user: identity.held, options: job.platform.options }),
    close: async () => undefined,
  };
}

/** Makes `directories` the slot user's (the cached input files stay read-only and ours). */
async function handOver(thread: FileSystemThread, directories: string[], user: Identity): Promise<void> {
  // An input root may have 100,000 folders: chowned on the file-system thread, a bounded batch at a time.
  for (let i = 0; i < directories.length; i += HAND_OVER_BATCH) {
    const ops = directories
      .slice(i, i + HAND_OVER_BATCH)
      .map((path) => ({ op: 'chown' as const, path, uid: user.uid, gid: user.gid }));
    throwIfStopped(await thread.apply(ops));
  }
}

/**
 * Uploads captured stdout or stderr (with `prefix` first) and returns its digest; an empty one is not uploaded.
 * `written` is what the runner says it wrote there, when it knows: a stream that carried nothing is not looked for.
 */
async function uploadOutput(cas: WorkerCas, path: string, prefix: string, written: number | null | undefined) {
  // No file: the command wrote nothing there (the runner makes it with the first byte). Any other failure to read
  // it fails the action rather than pass off an empty stream as what the command wrote.
  const captured =
    written === 0
      ? Buffer.alloc(0)
      : await readFile(path).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return Buffer.alloc(0);
          throw err;
        });
  const bytes = prefix === '' ? captured : Buffer.concat([Buffer.from(prefix), captured]);
  const digest: Digest = { hash: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.byteLength };
  if (bytes.byteLength > 0) await cas.uploadBytes(digest, bytes);
  return digestMessage(digest);
}

/** The note Bazel shows the user beside a failed command's stderr. */
function describeFailure(outcome: RunOutcome): string {
  if (outcome.startError !== null) return outcome.startError;
  const notes: string[] = [];
  if (outcome.oomKilled) notes.push('the command ran out of memory (its memory limit) and was killed');
  else if (outcome.signal !== null) notes.push(`the command was killed by ${outcome.signal}`);
  else if (signalOfExitCode(outcome.exitCode) !== null) {
    // The sandbox's init passes a signal death on as 128 + N, as shells do: the same number an exit(128 + N) gives.
    notes.push(
      `exit code ${outcome.exitCode}: the command was killed by ${signalOfExitCode(outcome.exitCode)}, or exited with that code`,
    );
  }
  if (outcome.outputTruncated) notes.push('its output was cut at the server limit');
  return notes.length === 0 ? '' : `larder: ${notes.join('; ')}`;
}

/** The signal a shell-style exit code above 128 names (137: SIGKILL), or null. */
function signalOfExitCode(exitCode: number): string | null {
  if (exitCode <= 128 || exitCode > 128 + 64) return null;
  const name = Object.entries(constants.signals).find(([, number]) => number === exitCode - 128)?.[0];
  return name ?? null;
}

/** An ExecuteResponse for a failure before or around the run: missing inputs, bad input, a full disk. */
function failure(err: unknown, job: ExecutionJob): ExecuteResponse {
  if (err instanceof MissingBlobsError) return missingBlobsResponse(err.digests);
  if (err instanceof ActionTimeoutError)
    return create(ExecuteResponseSchema, { status: { code: Code.DEADLINE_EXCEEDED, message: err.message } });
  if (isLarderError(err, 'invalid_argument'))
    return create(ExecuteResponseSchema, { status: { code: Code.INVALID_ARGUMENT, message: err.message } });
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || isLarderError(err, 'no_space')) {
    return create(ExecuteResponseSchema, {
      status: { code: Code.RESOURCE_EXHAUSTED, message: `the worker's disk is full: ${(err as Error).message}` },
    });
  }
  return create(ExecuteResponseSchema, {
    status: {
      code: Code.INTERNAL,
      message: `larder could not execute action ${job.actionDigest.hash}: ${(err as Error)?.message ?? String(err)}`,
    },
  });
}

/** The status a cancelled run ends with: the canceller's (CANCELLED, or UNAVAILABLE when the server stops). */
function statusOf(reason: unknown) {
  const { code, details } = callStatus(reason);
  return code === Code.INTERNAL
    ? { code: Code.CANCELLED, message: 'the action was cancelled' }
    : { code, message: details };
}

/** Sub-millisecond wall-clock time: the phases of a small action last a millisecond or two. */
function now() {
  return preciseTimestamp();
}
