// Remote persistent workers with the real Bazel 4.2.3: twenty actions of a JSON worker that takes 1 s to start
// (test/bazel/workspace: //:slow_uppers, exec_properties persistentWorkerKey + cache-silo-key), built with
// --remote_executor against an executor that enables persistent workers on the local runner. The executor's own
// log says how many worker processes it started.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, remoteExecutionFlags } from '../../bazel/bazel.ts';
import { expectOk } from '../../bazel/expectations.ts';
import { requireTool } from '../../helpers/tools.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');

describe.runIf(haveBazel)('real Bazel with remote persistent workers', () => {
  const dir = reachableTempDir('larder-bazel-persistent-');
  let executor: ExecutorProcess;
  let ws: BazelWorkspace;

  beforeAll(async () => {
    executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir, 'store')}`,
      '--work-dir',
      join(dir, 'work'),
      '--persistent-workers',
      'local',
      '--concurrency',
      '2',
      '--log-level',
      'info',
    ]);
    ws = await BazelWorkspace.create();
  }, 120_000);
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await executor?.stop();
  }, 120_000);

  it('twenty actions of a slow-starting worker are served by at most one worker process per concurrent action', async () => {
    const run = await ws.build(['//:slow_uppers'], [...remoteExecutionFlags(executor.url), '--jobs=4']);
    expectOk(run);
    expect(run.summary!.other, run.summary!.line).toEqual({ remote: 20 });
    // Two actions run at once (--concurrency 2), and a singleplex worker takes one at a time: two processes at
    // most served all twenty; one-shot, each action would have paid the 1 s start-up.
    const starts = executor.output().match(/persistent worker started/g) ?? [];
    expect(starts.length, executor.output()).toBeGreaterThanOrEqual(1);
    expect(starts.length, executor.output()).toBeLessThanOrEqual(2);
    for (const i of [0, 7, 19])
      expect((await ws.readOutput(`slow_upper_${i}/FRUITS.TXT`)).toString()).toMatch(/^QUINCE\nAPPLE\n/);
  }, 600_000);
});
