// Issue 17, rows 8 and 10, against a real `larder executor` process: an input root that names one directory a
// thousand times is counted and refused before any link is made, and an action with 100,000 output files has
// them all collected and uploaded (how fast is bench/execution.ts's business, not a timed test's).
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { TreeSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { fromBinary } from '@bufbuild/protobuf';
import { watchRss } from '../../helpers/proc.ts';
import { ActionFixture, finalResponse } from '../execution/fixture.ts';
import {
  actionLeftovers,
  type Clients,
  clientsFor,
  drain,
  type ExecutorProcess,
  reachableTempDir,
  readAll,
  startExecutorProcess,
} from '../helpers.ts';

describe('worker bounds on a real executor', () => {
  let dir: string;
  let executor: ExecutorProcess;
  let clients: Clients;
  let fx: ActionFixture;

  beforeAll(async () => {
    dir = reachableTempDir('larder-worker-bounds-');
    // Default limits: the point is what an executor nobody tuned does with these requests.
    // A memory store: what is under test is how outputs reach the CAS (in batches), not the disk store's syncs.
    executor = await startExecutorProcess([
      '--store',
      'memory:2GiB',
      '--work-dir',
      join(dir, 'work'),
      '--concurrency',
      '2',
    ]);
    clients = clientsFor(`127.0.0.1:${executor.port}`);
    fx = new ActionFixture(clients);
  });
  afterAll(async () => {
    clients?.close();
    await executor?.stop();
    rmSync(dir, { recursive: true, force: true }); // 100,000 blobs and outputs: allow for a slow disk
  }, 180_000);

  it('refuses an input root that fans out past --max-input-files with INVALID_ARGUMENT, before any link', async () => {
    // Row 8 scaled just past the default limit of 1,000,000 files: 1,000 subdirectories each naming one
    // 1,001-file directory. About 100 KB of Directory protos that would stage 1,001,000 links.
    const content = Buffer.from('fan-out input\n');
    const [blob] = await fx.upload(content);
    const wide = await fx.directory({
      files: Array.from({ length: 1001 }, (_, i) => ({ name: `f${String(i).padStart(4, '0')}`, digest: blob })),
    });
    const root = await fx.directory({
      directories: Array.from({ length: 1000 }, (_, i) => ({ name: `d${String(i).padStart(4, '0')}`, digest: wide })),
    });
    const actionDigest = await fx.action({ inputRoot: root, command: { arguments: ['/bin/true'] } });

    const rss = watchRss(executor.pid, 300);
    const started = Date.now();
    try {
      const operations = await drain(
        clients.execution.execute({ actionDigest, skipCacheLookup: true }, { timeoutMs: 30_000 }),
      ).catch((err: unknown) => {
        rss.check(); // a dropped connection is most likely the watch killing a bloated executor: say so
        throw err;
      });
      const elapsedMs = Date.now() - started;
      const response = finalResponse(operations);
      expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
      expect(response.status?.message).toMatch(/1001000 files.*--max-input-files/);
      expect(elapsedMs).toBeLessThan(5_000);
      console.log(`fan-out root refused in ${elapsedMs} ms, executor RSS grew ${rss.check().toFixed(1)} MiB`);
    } finally {
      rss.stop();
    }
    // Nothing was fetched into the input cache, so nothing was linked from it.
    const inputs = join(dir, 'work', 'inputs');
    expect(existsSync(inputs) ? readdirSync(inputs).filter((name) => name.startsWith(blob!.hash)) : []).toEqual([]);
  }, 60_000);

  it('counts staging against the action timeout: DEADLINE_EXCEEDED when staging runs past it', async () => {
    // 200 directories naming one 1,000-file directory: 200,000 links, within every default limit, far more than
    // a second's staging.
    const [blob] = await fx.upload(Buffer.from('slow to stage\n'));
    const wide = await fx.directory({
      files: Array.from({ length: 1000 }, (_, i) => ({ name: `f${String(i).padStart(4, '0')}`, digest: blob })),
    });
    const root = await fx.directory({
      directories: Array.from({ length: 200 }, (_, i) => ({ name: `d${String(i).padStart(3, '0')}`, digest: wide })),
    });
    const actionDigest = await fx.action({ inputRoot: root, command: { arguments: ['/bin/true'] }, timeoutSeconds: 1 });
    const started = Date.now();
    const operations = await drain(
      clients.execution.execute({ actionDigest, skipCacheLookup: true }, { timeoutMs: 60_000 }),
    );
    const elapsedMs = Date.now() - started;
    const response = finalResponse(operations);
    expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(response.status?.message).toMatch(/staging the action's inputs took longer than its timeout of 1 s/);
    console.log(`staging past a 1 s timeout answered in ${elapsedMs} ms`);
    expect(elapsedMs).toBeLessThan(10_000);
    // Staging stopped: nothing is left of the action's directory.
    expect(actionLeftovers(join(dir, 'work'))).toEqual([]);
  }, 90_000);

  it('collects and uploads 100,000 output files, every one into the Tree and the CAS', async () => {
    // 100,000 files with distinct contents (one number each), in 100 folders of 1,000.
    const script =
      'seq 0 99999 > all && mkdir out && for d in $(seq 0 99); do mkdir out/d$d; done && ' +
      'awk \'{ print > ("out/d" int($1 / 1000) "/f" $1); close("out/d" int($1 / 1000) "/f" $1) }\' all';
    const actionDigest = await fx.action({
      command: { arguments: ['/bin/sh', '-c', script], outputDirectories: ['out'] },
      timeoutSeconds: 600,
    });
    const started = Date.now();
    const { response } = await fx.execute(actionDigest, { skipCacheLookup: true });
    const elapsedMs = Date.now() - started;
    expect(response.status?.code ?? 0).toBe(Code.OK);
    const result = response.result!;
    expect(result.exitCode).toBe(0);
    const metadata = result.executionMetadata!;
    const ms = (t: typeof metadata.outputUploadStartTimestamp) => Number(t!.seconds) * 1000 + t!.nanos / 1e6;
    const uploadMs = ms(metadata.outputUploadCompletedTimestamp) - ms(metadata.outputUploadStartTimestamp);
    console.log(`100,000 outputs: collected and uploaded in ${uploadMs.toFixed(0)} ms; Execute took ${elapsedMs} ms`);

    // Every file is in the Tree and in the CAS.
    const treeDigest = result.outputDirectories[0]!.treeDigest!;
    // About 8 MB: over the batch limit, so read over ByteStream.
    const tree = fromBinary(TreeSchema, await readAll(clients, `blobs/${treeDigest.hash}/${treeDigest.sizeBytes}`));
    expect(tree.root!.directories).toHaveLength(100);
    const files = tree.children.flatMap((c) => c.files);
    expect(files).toHaveLength(100_000);
    const digests = files.map((f) => f.digest!);
    for (let at = 0; at < digests.length; at += 10_000) {
      const reply = await clients.cas.findMissingBlobs({ blobDigests: digests.slice(at, at + 10_000) });
      expect(reply.missingBlobDigests).toEqual([]);
    }
    const f12345 = tree.children.flatMap((c) => c.files.filter((f) => f.name === 'f12345'))[0]!;
    expect((await fx.read(f12345.digest)).toString()).toBe('12345\n');
  }, 600_000);
});
