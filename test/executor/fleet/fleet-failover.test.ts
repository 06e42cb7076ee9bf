// A Redis failover under a real Bazel build: a primary, a replica and three Sentinels (Debian's redis-server and
// redis-sentinel), a frontend and two workers that reach them as `--queue redis+sentinel://…/larder`. Bazel
// 4.2.3 builds sixteen one-second genrules and a seventeenth that needs them all; once two have completed, the
// primary is SIGKILLed (by the PID this test started). The Sentinels promote the replica, every process finds it
// through them, and the build completes: calls made meanwhile fail with UNAVAILABLE, which Bazel retries.
//
// "Nothing completes twice", checked on the promoted primary: every operation created was finished once (the
// `completed` count equals `submitted`), no action digest has two operations that finished with a result, and
// the action cache holds one entry per action (ExecutedActionMetadata says which worker ran it). A job whose
// lease ran out while Redis was away may have been started again (its attempts > 1); only one run is recorded.
//
// The failover's timings go to the test's output: from the kill to the Sentinels' switch-master, to the first
// action a worker claimed after the kill (its ExecutedActionMetadata), and to the build's end. Upper bounds on a
// busy machine.
import { fromBinary } from '@bufbuild/protobuf';
import { type Timestamp, timestampDate } from '@bufbuild/protobuf/wkt';
import { Redis } from 'ioredis';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecuteResponseSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { BazelWorkspace, bazelStatus, describeRun, remoteExecutionFlags } from '../../bazel/bazel.ts';
import { haveRedis } from '../../helpers/redis.ts';
import { haveRedisSentinel, startSentinels, type TestSentinels } from '../../helpers/redis-sentinel.ts';
import { requireTool } from '../../helpers/tools.ts';
import { type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { actionResults, startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

const bazel = bazelStatus();
const runs =
  requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap') &&
  haveRedis() &&
  haveRedisSentinel();

const ACTIONS = 16;

/** Sixteen independent one-second actions and one that needs them all: ~5 s of work for four slots. */
function failoverBuild(): string {
  const rules = Array.from(
    { length: ACTIONS },
    (_, i) => `genrule(name = "step${i}", outs = ["step${i}.txt"], cmd = "sleep 1; echo ${i} > $@")`,
  );
  rules.push(
    `genrule(name = "all", srcs = [${Array.from({ length: ACTIONS }, (_, i) => `":step${i}"`).join(', ')}], outs = ["all.txt"], cmd = "cat $(SRCS) | sort -n | tr '\\\\n' ' ' > $@")`,
  );
  return `${rules.join('\n')}\n`;
}

describe.runIf(runs)('a fleet on a Sentinel-managed Redis whose primary dies mid-build', () => {
  const dir = reachableTempDir('larder-failover-');
  const store = join(dir, 'store');
  let redis: TestSentinels;
  let front: ExecutorProcess;
  let workers: WorkerProcess[] = [];

  beforeAll(async () => {
    redis = await startSentinels();
    front = await startFrontend({ redis: redis.url, store });
    workers = await Promise.all([
      startWorker({ redis: redis.url, frontend: front.url }),
      startWorker({ redis: redis.url, frontend: front.url }),
    ]);
  }, 120_000);

  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await Promise.all(workers.map((w) => w.stop()));
    await front?.stop();
    await redis?.close();
  }, 120_000);

  it('the build completes on the promoted replica, each action completed once', async () => {
    const ws = await BazelWorkspace.create();
    mkdirSync(join(ws.root, 'failover'));
    writeFileSync(join(ws.root, 'failover/BUILD'), failoverBuild());

    const primary = new Redis({ port: redis.primary.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    const sentinel = new Redis({ port: redis.sentinelPorts[0]!, host: '127.0.0.1' });
    let switchedAt = 0;
    await sentinel.subscribe('+switch-master');
    sentinel.on('message', () => {
      switchedAt ||= Date.now();
    });

    const building = ws.build(
      ['//failover:all'],
      // Bazel's retries (100 ms doubling, at most 5 s apart) must outlast the failover: ten span ~25 s.
      [...remoteExecutionFlags(front.url, 300), '--remote_retries=10'],
      { timeoutMs: 600_000 },
    );
    // The kill comes once two actions have completed: the build is under way, most of it still to run.
    for (let i = 0; i < 1200 && Number(await primary.hget('larder:stats', 'completed')) < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(Number(await primary.hget('larder:stats', 'completed'))).toBeGreaterThanOrEqual(2);
    primary.disconnect();
    const oldPrimary = `127.0.0.1:${redis.primary.port}`;
    const killedAt = Date.now();
    process.kill(redis.primary.pid(), 'SIGKILL');

    const run = await building;
    const builtAt = Date.now();
    expect(run.exitCode, describeRun(run)).toBe(0);
    expect(run.summary!.other, run.summary!.line).toEqual({ remote: run.summary!.nonInternal });
    expect((await ws.readOutput('failover/all.txt')).toString()).toBe(
      `${Array.from({ length: ACTIONS }, (_, i) => i).join(' ')} `,
    );
    sentinel.disconnect();

    const promoted = await redis.currentPrimary();
    expect(promoted).toBe(`127.0.0.1:${redis.replica.port}`);
    expect(promoted).not.toBe(oldPrimary);
    const now = new Redis({ port: redis.replica.port, host: '127.0.0.1' });
    try {
      const stats = await now.hgetall('larder:stats');
      // Every operation created was finished once: finishing is the only step that counts `completed`.
      expect(Number(stats.completed), JSON.stringify(stats)).toBe(Number(stats.submitted));
      const finishedWithResult = new Map<string, number>();
      const attempts: number[] = [];
      for (const key of await now.keys('larder:op:*')) {
        const op = await now.hgetall(key);
        attempts.push(Number(op.attempts));
        if (op.done !== '1' || op.response === undefined) continue;
        const response = fromBinary(ExecuteResponseSchema, Buffer.from(op.response, 'base64'));
        if (response.result === undefined || (response.status?.code ?? 0) !== 0) continue;
        finishedWithResult.set(op.digest!, (finishedWithResult.get(op.digest!) ?? 0) + 1);
      }
      expect([...finishedWithResult.values()].filter((n) => n > 1)).toEqual([]);

      const results = await actionResults(store);
      // One action cache entry per action of the build (17), each written by one of the two workers.
      expect(results.length).toBe(ACTIONS + 1);
      const names = new Set(workers.map((w) => w.name));
      for (const result of results) expect(names).toContain(result.executionMetadata?.worker);
      // No connection gave up for good: every command of a worker whose connection ioredis had ended failed
      // "Connection is closed." (as with ioredis's failoverDetector), and it never ran anything again.
      for (const process of [front, ...workers]) expect(process.output()).not.toContain('Connection is closed');

      // The first action a worker claimed after the kill came from the promoted replica: when it started and
      // completed says how long the fleet stood still. (One that completed just after the kill was claimed before.)
      const ms = (t: Timestamp | undefined) => timestampDate(t!).getTime() - killedAt;
      const claimedAfter = results
        .map((r) => r.executionMetadata!)
        .filter((m) => ms(m.workerStartTimestamp) > 0)
        .sort((a, b) => ms(a.workerStartTimestamp) - ms(b.workerStartTimestamp));
      expect(claimedAfter.length).toBeGreaterThan(0);
      const first = claimedAfter[0]!;
      console.log(
        `failover timings (upper bounds): kill → switch-master ${switchedAt === 0 ? 'unseen' : `${switchedAt - killedAt} ms`}, ` +
          `kill → first action claimed after it ${ms(first.workerStartTimestamp)} ms (completed ${ms(first.workerCompletedTimestamp)} ms), ` +
          `kill → build done ${builtAt - killedAt} ms, whole build ${run.durationMs} ms; ` +
          `${results.length - claimedAfter.length} actions claimed before the kill; operations ${stats.submitted} ` +
          `(merged submissions ${stats.merged ?? 0}), deliveries beyond the first ${attempts.reduce((sum, a) => sum + Math.max(0, a - 1), 0)}`,
      );
    } finally {
      now.disconnect();
    }
  }, 660_000);
});
