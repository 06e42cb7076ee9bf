import { Redis } from 'ioredis';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, remoteExecutionFlags } from '../../bazel/bazel.ts';
import { expectOk } from '../../bazel/expectations.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { requireTool } from '../../helpers/tools.ts';
import { ActionFixture, finalResponse, metadataOf } from '../execution/fixture.ts';
import { type Clients, clientsFor, drain, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { actionResults, arm64Toolchain, startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const arm64 = haveRedis() && haveBazel ? arm64Toolchain() : null;

describe.runIf(arm64 !== null)('a fleet: two frontends, amd64 and arm64 workers, one Redis', () => {
  const dir = reachableTempDir('larder-fleet-');
  const store = join(dir, 'store');
  let redis: TestRedis;
  let raw: Redis;
  let frontA: ExecutorProcess;
  let frontB: ExecutorProcess;
  let amd: WorkerProcess[] = [];
  let arm: WorkerProcess;
  let clientsA: Clients;
  let clientsB: Clients;

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
    [frontA, frontB] = await Promise.all([
      startFrontend({ redis: redis.url, store }),
      startFrontend({ redis: redis.url, store }),
    ]);
    // Workers use frontend A's CAS (in production: the load balancer in front of all frontends), so killing B
    // below only cuts off clients. The emulated worker starts first and in parallel: it takes ~10–30 s to load.
    const armStarting = startWorker({ redis: redis.url, frontend: frontA.url, arm64: arm64!, startTimeoutMs: 180_000 });
    amd = await Promise.all([
      startWorker({ redis: redis.url, frontend: frontA.url }),
      startWorker({ redis: redis.url, frontend: frontA.url }),
    ]);
    arm = await armStarting;
    clientsA = clientsFor(`127.0.0.1:${frontA.port}`);
    clientsB = clientsFor(`127.0.0.1:${frontB.port}`);
  }, 240_000);

  afterAll(async () => {
    clientsA?.close();
    clientsB?.close();
    await BazelWorkspace.shutdownAll();
    await Promise.all([...amd, arm].filter(Boolean).map((w) => w.stop()));
    await Promise.all([frontA, frontB].filter(Boolean).map((f) => f.stop()));
    raw?.disconnect();
    await redis?.close();
  }, 120_000);

  it('the arm64 worker reports Arch=arm64 from its own process, the others amd64', () => {
    expect(arm.platform).toContain('Arch=arm64');
    expect(arm.name).toMatch(/\/arm64\//);
    for (const w of amd) expect(w.platform).toContain('Arch=amd64');
  });

  it('real Bazel builds through one frontend, arm64 actions on the arm64 worker (aarch64 in their outputs)', async () => {
    const ws = await BazelWorkspace.create();
    copyFileSync(join(arm64!.sysroot, 'bin/busybox'), join(ws.root, 'arm64/busybox'));
    const run = await ws.build(
      ['//:remote_outputs', '//arm64:all'],
      [
        ...remoteExecutionFlags(frontA.url, 300),
        // Actions with no platform of their own go to amd64 workers; //arm64 targets set Arch=arm64 themselves.
        '--remote_default_exec_properties=OSFamily=Linux',
        '--remote_default_exec_properties=Arch=amd64',
      ],
      { timeoutMs: 900_000 },
    );
    expectOk(run);
    expect(run.summary!.other, run.summary!.line).toEqual({ remote: run.summary!.nonInternal });
    expect((await ws.readOutput('arm64/arch.txt')).toString()).toBe('aarch64\n');
    expect((await ws.readOutput('arm64/digest.txt')).toString()).toMatch(/^aarch64\n[0-9a-f]{64}/);
    expect((await ws.readOutput('greeting.txt')).toString()).toBe('hello, remote: every action a cache hit\n');

    // Who ran what, from the action cache entries the workers wrote (ExecutedActionMetadata.worker).
    const results = await actionResults(store);
    const ranOn = (output: string) =>
      results.filter((r) => r.outputFiles.some((f) => f.path.endsWith(output))).map((r) => r.executionMetadata?.worker);
    expect(ranOn('arm64/arch.txt')).toEqual([arm.name]);
    expect(ranOn('arm64/digest.txt')).toEqual([arm.name]);
    const amdNames = new Set(amd.map((w) => w.name));
    for (const result of results) {
      if (result.outputFiles.some((f) => f.path.includes('/arm64/'))) continue;
      expect([...amdNames]).toContain(result.executionMetadata!.worker);
    }
    // Both amd64 workers shared the build.
    expect(new Set(results.map((r) => r.executionMetadata?.worker)).size).toBe(3);
  }, 900_000);

  it('a worker SIGKILLed mid-action: the action completes on another worker, recorded once', async () => {
    const fixture = new ActionFixture(clientsA);
    const action = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'sleep 2; echo done-after-kill'] },
      platform: { Arch: 'amd64' },
      salt: `kill-${Date.now()}`,
    });
    const completedBefore = Number(await raw.hget('larder:stats', 'completed'));
    const stream = clientsA.execution.execute({ actionDigest: action, skipCacheLookup: true });
    const operations = [];
    let victim: WorkerProcess | undefined;
    for await (const operation of stream) {
      operations.push(operation);
      if (victim === undefined && metadataOf(operation).stage === 3) {
        const holder = await raw.hget(`larder:op:${operation.name}`, 'worker');
        victim = amd.find((w) => holder?.startsWith(`${w.name}#`));
        expect(victim, `holder ${holder}`).toBeDefined();
        await victim!.kill();
      }
    }
    const response = finalResponse(operations);
    expect(response.status?.code ?? 0).toBe(0);
    expect(response.result?.exitCode).toBe(0);
    expect((await fixture.read(response.result!.stdoutDigest)).toString()).toBe('done-after-kill\n');
    expect(response.result?.executionMetadata?.worker).not.toBe(victim!.name);
    expect(await raw.hget(`larder:op:${operations[0]!.name}`, 'attempts')).toBe('2');
    expect(Number(await raw.hget('larder:stats', 'completed')) - completedBefore).toBe(1);
    // Back to two amd64 workers for what follows.
    amd = [...amd.filter((w) => w !== victim), await startWorker({ redis: redis.url, frontend: frontA.url })];
  }, 120_000);

  it('a frontend killed while a client waits: WaitExecution on the other frontend finishes the operation', async () => {
    const fixture = new ActionFixture(clientsB);
    const action = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'sleep 2; echo survived'] },
      platform: { Arch: 'amd64' },
      salt: `front-${Date.now()}`,
    });
    const stream = clientsB.execution.execute({ actionDigest: action, skipCacheLookup: true });
    let name = '';
    await expect(
      (async () => {
        for await (const operation of stream) {
          name = operation.name;
          if (metadataOf(operation).stage === 3) process.kill(frontB.pid, 'SIGKILL');
        }
      })(),
    ).rejects.toMatchObject({ code: expect.any(Number) });
    expect(name).toMatch(/^operations\//);
    const operations = await drain(clientsA.execution.waitExecution({ name }));
    const response = finalResponse(operations);
    expect(response.result?.exitCode).toBe(0);
    // B is gone: read the output through A (they share the store).
    expect((await new ActionFixture(clientsA).read(response.result!.stdoutDigest)).toString()).toBe('survived\n');
    await frontB.stop();
  }, 120_000);
});
