// Real Bazel 4.2.3 with --remote_executor against `larder executor --allow-docker` on a private Docker engine:
// the genrule part of the test workspace builds with every action in the local busybox image (which has bash,
// as Bazel's genrules need), in a container per action and then in warm containers (dockerReuse=True); the
// outputs match a local build byte for byte, and //:where proves the actions ran in the image. Last, a build that
// names no image at all runs in the pool's image of an executor started with --default-container-image.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, remoteExecutionFlags } from '../../bazel/bazel.ts';
import { expectOk } from '../../bazel/expectations.ts';
import { requireTool } from '../../helpers/tools.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';
import { markerOf } from './images.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const haveDocker = dockerAvailable();

const TARGETS = ['//:report', '//:split', '//:empty', '//:where'];
const COMPARED = ['report.txt', 'head.txt', 'tail.txt', 'count.txt', 'empty.txt'];

describe.runIf(haveBazel && haveDocker)('real Bazel with --remote_executor and container-image=docker://…', () => {
  const dir = reachableTempDir('larder-bazel-docker-');
  let engine: TestEngine;
  let executor: ExecutorProcess;
  let ws: BazelWorkspace;
  let flags: (extra: string[]) => string[];

  beforeAll(async () => {
    engine = await startTestEngine(['busybox']);
    executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir, 'store')}`,
      '--work-dir',
      join(dir, 'work'),
      '--allow-docker',
      '--docker-host',
      engine.host,
    ]);
    flags = (extra) => [
      ...remoteExecutionFlags(executor.url),
      `--remote_default_exec_properties=container-image=docker://${engine.images.busybox}`,
      ...extra.map((p) => `--remote_default_exec_properties=${p}`),
    ];
    ws = await BazelWorkspace.create();
  }, 120_000);
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await executor?.stop();
    await engine?.stop();
  }, 120_000);

  const read = async (name: string) => (await readFile(ws.outputPath(name))).toString('base64');
  const snapshot = async () =>
    Object.fromEntries(await Promise.all(COMPARED.map(async (f) => [f, await read(f)] as const)));
  let remote: Record<string, string> = {};

  it('a container per action: every action runs remotely, in the image', async () => {
    const run = await ws.build(TARGETS, flags([]));
    expectOk(run);
    expect(run.summary!.other, run.summary!.line).toEqual({ remote: run.summary!.nonInternal });
    expect((await readFile(ws.outputPath('where.txt'))).toString()).toBe(markerOf('busybox'));
    remote = await snapshot();
    expect(await engine.larderContainers()).toEqual([]);
  }, 600_000);

  it('dockerReuse=True: the same outputs, from warm containers that stay for the next actions', async () => {
    await ws.clean();
    // New exec properties, new action digests: every action runs again rather than hitting the cache.
    const run = await ws.build(TARGETS, flags(['dockerReuse=True']));
    expectOk(run);
    expect(run.summary!.other, run.summary!.line).toEqual({ remote: run.summary!.nonInternal });
    expect((await readFile(ws.outputPath('where.txt'))).toString()).toBe(markerOf('busybox'));
    expect(await snapshot()).toEqual(remote);
    const warm = await engine.larderContainers();
    expect(warm.length).toBeGreaterThan(0);
    expect(warm.length).toBeLessThan(run.summary!.nonInternal); // fewer containers than actions: they were reused
  }, 600_000);

  it('the outputs match a local build byte for byte', async () => {
    await ws.clean();
    const local = await ws.build(TARGETS, []);
    expectOk(local);
    expect(await snapshot()).toEqual(remote);
    expect((await readFile(ws.outputPath('where.txt'))).toString()).toBe('host\n');
  }, 600_000);

  it('--default-container-image: a build that names no image runs every action in the pool image', async () => {
    const pool = await startExecutorProcess([
      '--store',
      `disk:${join(dir, 'pool-store')}`,
      '--work-dir',
      join(dir, 'pool-work'),
      '--allow-docker',
      '--docker-host',
      engine.host,
      '--default-container-image',
      `docker://${engine.images.busybox}`,
    ]);
    try {
      await ws.clean();
      const warmBefore = await engine.larderContainers(); // the dockerReuse test's, still warm
      const run = await ws.build(TARGETS, remoteExecutionFlags(pool.url));
      expectOk(run);
      expect(run.summary!.other, run.summary!.line).toEqual({ remote: run.summary!.nonInternal });
      expect((await readFile(ws.outputPath('where.txt'))).toString()).toBe(markerOf('busybox'));
      expect(await snapshot()).toEqual(remote);
      expect(await engine.larderContainers()).toEqual(warmBefore);
    } finally {
      await pool.stop();
    }
  }, 600_000);
});
