// The real Bazel client (Debian's 4.2.3) against `larder executor` over gRPC, sharing one workspace and
// one disk store across steps so that only two builds are cold:
//   1. HTTP edge, cold                       -> uploads over HTTP
//   2. gRPC, after clean                     -> every action a remote cache hit (HTTP wrote, gRPC reads)
//   3. gRPC --remote_instance_name=team-a    -> no hit at all (instances are apart), uploads over gRPC
//   4. gRPC team-a, after clean              -> every action a hit (Bazel's own gRPC uploads: ByteStream
//                                               writes, FindMissingBlobs, UpdateActionResult)
//   5. HTTP edge /team-a                     -> every action a hit (gRPC wrote, HTTP reads)
// The servers take turns on the folder here; live sharing of one folder is tested in test/storage/disk.test.ts.
//
// grpcs:// with this Bazel needs OpenSSL through netty-tcnative (its Netty has no JDK ALPN): see
// bazel-tls-e2e.test.ts.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, type BazelRun } from '../bazel/bazel.ts';
import { TARGETS, expectOk, expectOutputs } from '../bazel/expectations.ts';
import { startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { requireTool } from '../helpers/tools.ts';
import { type ExecutorProcess, startExecutorProcess } from './helpers.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');

describe.runIf(haveBazel)('real Bazel against larder executor (gRPC)', () => {
  const dir = tempDir('larder-bazel-grpc-');
  const store = `disk:${join(dir.path, 'store')}`;
  let ws: BazelWorkspace;
  let coldProcesses = 0;

  beforeAll(async () => {
    ws = await BazelWorkspace.create();
  });
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    dir.remove();
  }, 120_000);

  async function withExecutor<T>(args: string[], body: (executor: ExecutorProcess) => Promise<T>): Promise<T> {
    const executor = await startExecutorProcess(['--store', store, ...args]);
    try {
      return await body(executor);
    } finally {
      await executor.stop();
    }
  }

  const expectAllHits = (run: BazelRun) => {
    expectOk(run);
    expect(run.summary!.remoteCacheHit, run.summary!.line).toBe(coldProcesses);
    expect(run.summary!.other, run.summary!.line).toEqual({});
  };

  it('1. a cold build through the HTTP edge fills the store', async () => {
    const edge = await startEdgeProcess({ runtime: 'node', args: ['--store', store] });
    try {
      const cold = await ws.build(TARGETS, [`--remote_cache=${edge.url}`]);
      expectOk(cold);
      expect(cold.summary!.remoteCacheHit).toBe(0);
      coldProcesses = cold.summary!.nonInternal;
      expect(coldProcesses).toBeGreaterThan(0);
    } finally {
      await edge.stop();
    }
  }, 600_000);

  it('2. after clean, a gRPC build is all remote cache hits, and request metadata reaches the log', async () => {
    await withExecutor(['--log-level', 'debug'], async (executor) => {
      await ws.clean();
      const warm = await ws.build(TARGETS, [`--remote_cache=${executor.url}`]);
      expectAllHits(warm);
      await expectOutputs(ws);
      expect(executor.output()).toMatch(
        /rpc=\/build\.bazel\.remote\.execution\.v2\.ActionCache\/GetActionResult tool=bazel\/\S* invocation=[0-9a-f-]{36}/,
      );
      expect(executor.output()).toMatch(/rpc=\/google\.bytestream\.ByteStream\/Read /);
    });
  }, 600_000);

  it('3. another instance name shares nothing with the warm default instance', async () => {
    await withExecutor([], async (executor) => {
      await ws.clean();
      const other = await ws.build(TARGETS, [`--remote_cache=${executor.url}`, '--remote_instance_name=team-a']);
      expectOk(other);
      expect(other.summary!.remoteCacheHit, other.summary!.line).toBe(0);
    });
  }, 600_000);

  it('4. after clean, team-a is all hits from what Bazel uploaded over gRPC in step 3', async () => {
    await withExecutor([], async (executor) => {
      await ws.clean();
      const warm = await ws.build(TARGETS, [`--remote_cache=${executor.url}`, '--remote_instance_name=team-a']);
      expectAllHits(warm);
      await expectOutputs(ws);
    });
  }, 600_000);

  it('5. the HTTP edge serves what Bazel uploaded over gRPC, under the instance as path prefix', async () => {
    const edge = await startEdgeProcess({ runtime: 'node', args: ['--store', store] });
    try {
      await ws.clean();
      const warm = await ws.build(TARGETS, [`--remote_cache=${edge.url}/team-a`]);
      expectAllHits(warm);
    } finally {
      await edge.stop();
    }
  }, 600_000);
});
