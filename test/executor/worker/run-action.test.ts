/**
 * runAction's handling of an action's folder, with a real CAS, file cache and file-system thread, and a runner
 * that only records where it was asked to run (the command itself is the runners' suites' business).
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../../shared/log.ts';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import {
  ActionSchema,
  CommandSchema,
  DirectorySchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { Runner, RunOutcome } from '../../../executor/runner/runner.ts';
import { type Identities, sharedIdentity, uidRange } from '../../../executor/runner/sandbox/identities.ts';
import type { ExecutionJob } from '../../../executor/scheduler/scheduler.ts';
import { ActionFolders } from '../../../executor/worker/action-folders.ts';
import { FileCache } from '../../../executor/worker/file-cache.ts';
import { type FileSystemOp, FileSystemThread } from '../../../executor/worker/file-system-thread.ts';
import { type ActionCacheWriter, type ActionEnvironment, runAction } from '../../../executor/worker/run-action.ts';
import { storeCas } from '../../../executor/worker/store-cas.ts';
import { memoryStore, putBlob, tempDirs } from './helpers.ts';
import { needsRoot } from '../../helpers/tools.ts';

const freshDir = tempDirs();
const thread = new FileSystemThread();
afterAll(() => thread.close());

/** A runner whose commands exit 0 at once, writing nothing; `execRoots` lists where each ran, `owners` their uid then. */
function recordingRunner(): Runner & { execRoots: string[]; owners: number[] } {
  const execRoots: string[] = [];
  const owners: number[] = [];
  return {
    kind: 'local',
    execRoots,
    owners,
    async run(request): Promise<RunOutcome> {
      execRoots.push(request.execRoot);
      owners.push(statSync(request.execRoot).uid);
      const now = new Date();
      return {
        exitCode: 0,
        signal: null,
        timedOut: false,
        cancelled: false,
        startError: null,
        outputTruncated: false,
        outputBytes: { stdout: 0, stderr: 0 },
        startedAt: now,
        endedAt: now,
      };
    },
  };
}

/** A file-system thread that lists the batches it is asked to apply. */
class RecordingThread extends FileSystemThread {
  readonly batches: FileSystemOp[][] = [];
  override apply(ops: readonly FileSystemOp[]) {
    this.batches.push([...ops]);
    return super.apply(ops);
  }
}

async function setup(
  write: ActionCacheWriter['write'],
  {
    identities = sharedIdentity(null),
    stagingThread = thread,
    readsWaitForWrites = false,
    log = createLogger('silent'),
  }: { identities?: Identities; stagingThread?: FileSystemThread; readsWaitForWrites?: boolean; log?: Logger } = {},
) {
  const store = memoryStore();
  const work = freshDir();
  const actionsDir = join(work, 'actions');
  const removedDir = join(work, 'removed');
  mkdirSync(actionsDir, { mode: 0o711 });
  mkdirSync(removedDir, { mode: 0o700 });
  const runner = recordingRunner();
  const env: ActionEnvironment = {
    workerName: 'test/0',
    cas: storeCas(store, ''),
    actionCache: { write, readsWaitForWrites },
    cache: await FileCache.open({ dir: join(work, 'inputs'), maxBytes: 1 << 24 }),
    runners: new Map([['local', runner]]),
    defaultContainerImage: null,
    persistentWorkers: null,
    actionFolders: new ActionFolders(actionsDir, thread, 2),
    removedDir,
    stagingThread,
    identities,
    maxOutputBytes: 1 << 20,
    inputLimits: { maxFiles: 1000, maxDirectories: 100, maxBytes: 1 << 24 },
    log,
  };
  const input = await putBlob(store, 'an input\n');
  const root = await putBlob(
    store,
    toBinary(
      DirectorySchema,
      create(DirectorySchema, { files: [{ name: 'in.txt', digest: { hash: input.hash, sizeBytes: 9n } }] }),
    ),
  );
  const command = create(CommandSchema, { arguments: ['/bin/true'] });
  const action = create(ActionSchema, { inputRootDigest: { hash: root.hash, sizeBytes: BigInt(root.sizeBytes) } });
  const job: ExecutionJob = {
    operation: 'operations/test',
    instance: '',
    actionDigest: { hash: 'a'.repeat(64), sizeBytes: 10 },
    action,
    command,
    encoded: { action: toBinary(ActionSchema, action), command: toBinary(CommandSchema, command) },
    platform: { constraints: new Map(), options: new Map(), runner: 'local' },
    timeoutMs: 60_000,
    priority: 0,
    queuedAt: new Date(),
  };
  return { env, job, runner, actionsDir, removedDir };
}

describe('runAction', () => {
  it("moves the action's folder out of the slot's reach while the action cache is written", async () => {
    let folderWhileWriting: { inActions: boolean; inRemoved: boolean } | null = null;
    let execRoot = '';
    let moved: () => boolean = () => false;
    const { env, job, runner, removedDir } = await setup(async () => {
      execRoot = runner.execRoots[0]!;
      const name = join(execRoot, '..').split('/').pop()!;
      moved = () => existsSync(join(removedDir, name));
      // The move started once the outputs were read; it lands while this write is still going on.
      for (let i = 0; i < 1000 && !moved(); i++) await new Promise((resolve) => setImmediate(resolve));
      folderWhileWriting = { inActions: existsSync(execRoot), inRemoved: moved() };
    });
    const run = await runAction(job, env, new AbortController().signal);
    expect(run.response.status?.code).toBe(0);
    expect(folderWhileWriting).toEqual({ inActions: false, inRemoved: true });
    await run.finish();
    expect(readdirSync(removedDir)).toEqual([]);
  });

  it('answers before the action cache write when reads wait for writes, and finish waits for the write', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let written = false;
    const { env, job } = await setup(
      async () => {
        await gate;
        written = true;
      },
      { readsWaitForWrites: true },
    );
    const run = await runAction(job, env, new AbortController().signal);
    expect(run.response.status?.code).toBe(0);
    expect(written).toBe(false);
    let finished = false;
    const finishing = run.finish().then(() => (finished = true));
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(finished).toBe(false);
    release();
    await finishing;
    expect(written).toBe(true);
  });

  it('answers success when a write it did not wait for fails, and finish logs the failure', async () => {
    const warnings: string[] = [];
    const log = { ...createLogger('silent'), warn: (message: string) => warnings.push(message) };
    const { env, job } = await setup(
      async () => {
        throw new Error('disk on fire');
      },
      { readsWaitForWrites: true, log },
    );
    const run = await runAction(job, env, new AbortController().signal);
    expect(run.response.status?.code).toBe(0);
    await run.finish();
    expect(warnings).toEqual([expect.stringContaining('could not write an action result to the action cache')]);
  });

  it('waits for the write before answering when reads do not wait for writes, and fails the action with it', async () => {
    const { env, job } = await setup(async () => {
      throw new Error('frontend gone');
    });
    const run = await runAction(job, env, new AbortController().signal);
    expect(run.response.status?.code).toBe(Code.INTERNAL);
    expect(run.response.status?.message).toContain('frontend gone');
    await run.finish();
  });

  // Handing each folder over in the batch that makes it saves a round trip, but root then goes on linking inside
  // folders the uid owns: only done when no process can run as that uid meanwhile.
  const uid = 1_900_000_321;
  for (const [who, identities, whileStaging] of [
    ['a uid of its own (--run-as-uids)', uidRange(uid, uid), true],
    ['a user every slot shares (--run-as)', sharedIdentity({ uid, gid: uid }), false],
  ] as const) {
    it.runIf(needsRoot('chowning to another uid'))(
      `as ${who}, hands the exec root over ${whileStaging ? 'while staging' : 'only once staging is done'}`,
      async () => {
        const recording = new RecordingThread();
        try {
          const { env, job, runner } = await setup(async () => {}, { identities, stagingThread: recording });
          const run = await runAction(job, env, new AbortController().signal);
          expect(run.response.status?.code).toBe(0);
          await run.finish();
          expect(runner.owners).toEqual([uid]);
          // The batch that makes the exec root: does it hand it over too, or does a batch of its own do that later?
          const making = recording.batches.findIndex((batch) => batch.some(({ op }) => op === 'mkdir'));
          const handing = recording.batches.findIndex((batch) => batch.some(({ op }) => op === 'chown'));
          expect(making).toBeGreaterThanOrEqual(0);
          expect(handing === making).toBe(whileStaging);
        } finally {
          await recording.close();
        }
      },
    );
  }
});
