// Remote persistent workers in containers with the real Bazel 4.2.3: the twenty //:slow_uppers actions (a JSON
// worker that takes 1 s to start; the targets set persistentWorkerKey and cache-silo-key) run in the image with
// Node, as long-lived execs in kept containers, against `larder executor --persistent-workers docker`.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, remoteExecutionFlags } from '../../bazel/bazel.ts';
import { expectOk } from '../../bazel/expectations.ts';
import { requireTool } from '../../helpers/tools.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const haveDocker = dockerAvailable();

describe.runIf(haveBazel && haveDocker)('real Bazel with remote persistent workers in containers', () => {
  const dir = reachableTempDir('larder-bazel-pw-docker-');
  let engine: TestEngine;
  let executor: ExecutorProcess;
  let ws: BazelWorkspace;

  beforeAll(async () => {
    engine = await startTestEngine(['node']);
    executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir, 'store')}`,
      '--work-dir',
      join(dir, 'work'),
      '--allow-docker',
      '--docker-host',
      engine.host,
      '--persistent-workers',
      'docker',
      '--concurrency',
      '2',
      '--log-level',
      'info',
    ]);
    ws = await BazelWorkspace.create();
  }, 180_000);
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await executor?.stop();
    await engine?.stop();
  }, 120_000);

  it('twenty actions of a slow-starting worker, served by at most one container worker per concurrent action', async () => {
    const run = await ws.build(
      ['//:slow_uppers'],
      [
        ...remoteExecutionFlags(executor.url),
        // Target exec_properties merge with the execution platform's, not with --remote_default_exec_properties.
        '--extra_execution_platforms=//platforms:docker_node',
      ],
    );
    expectOk(run);
    expect(run.summary!.other, run.summary!.line).toEqual({ remote: 20 });
    const starts = executor.output().match(/persistent worker started/g) ?? [];
    expect(starts.length, executor.output()).toBeGreaterThanOrEqual(1);
    expect(starts.length, executor.output()).toBeLessThanOrEqual(2);
    expect(engine.images.node).toBe('larder-test/node:1'); // the image //platforms:docker_node names
    expect((await engine.larderContainers()).length).toBeGreaterThanOrEqual(1);
    expect((await ws.readOutput('slow_upper_3/FRUITS.TXT')).toString()).toMatch(/^QUINCE\nAPPLE\n/);
  }, 600_000);
});
