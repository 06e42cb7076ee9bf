// Nothing left behind: a real `larder executor` is SIGKILLed while a container action, a warm-container action, a
// sandboxed local action and a local persistent worker are running; restarted on the same work folder, it removes
// the containers it had (found by their owner label), kills what is left of its actions and workers (found here by
// the marks on their command lines and by the cgroups they were in), and empties its work folders, before it
// serves. A second executor on the same host, with a work folder of its own, keeps its running container; a third
// started on the live one's work folder is refused.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { WORKSPACE_TEMPLATE } from '../../bazel/bazel.ts';
import { killMarked, markedProcesses, newMark } from '../../helpers/marked-processes.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { type Clients, clientsFor, type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';

const haveDocker = dockerAvailable();
const JSON_WORKER = readFileSync(join(WORKSPACE_TEMPLATE, 'tools/upper_worker.js'));
/** How long the marked processes may take to appear once their actions are queued. */
const START_LIMIT_MS = 60_000;

describe.runIf(haveDocker)('a crashed executor sweeps what it left at its next start', () => {
  const dir = reachableTempDir('larder-crash-sweep-');
  const workDir = join(dir, 'work');
  const marks = {
    container: newMark('crash-container'),
    warm: newMark('crash-warm'),
    local: newMark('crash-local'),
    worker: newMark('crash-worker'),
    neighbour: newMark('crash-neighbour'),
  };
  let engine: TestEngine;
  let image: string;
  let neighbour: ExecutorProcess;
  let neighbourClients: Clients;

  const executorArgs = (work: string, store: string) => [
    '--store',
    `disk:${store}`,
    '--work-dir',
    work,
    '--allow-docker',
    '--docker-host',
    engine.host,
    '--persistent-workers',
    'local',
    '--concurrency',
    '4',
  ];

  beforeAll(async () => {
    engine = await startTestEngine(['busybox']);
    image = `docker://${engine.images.busybox}`;
    neighbour = await startExecutorProcess(executorArgs(join(dir, 'neighbour-work'), join(dir, 'neighbour-store')));
    neighbourClients = clientsFor(`127.0.0.1:${neighbour.port}`);
  }, 120_000);

  afterAll(async () => {
    neighbourClients?.close();
    await neighbour?.stop();
    for (const mark of Object.values(marks)) killMarked(mark);
    await engine?.stop();
  }, 60_000);

  /** An action that runs until killed, its mark on its command line. */
  const sleeper = (fx: ActionFixture, mark: string, platform?: Record<string, string>) =>
    fx.action({ command: { arguments: ['/bin/sh', '-c', `sleep 600; : ${mark}`] }, platform, timeoutSeconds: 900 });

  /** A persistent worker (its mark among its start-up arguments) that never answers its request. */
  async function hangingWorker(fx: ActionFixture): Promise<Digest> {
    const inputRoot = await fx.tree({
      tools: { 'worker.js': { content: JSON_WORKER, executable: true } },
      in: { 'a.txt': 'a\n' },
      'a.args': 'in/a.txt\nout/a.TXT\nhang\n',
    });
    return fx.action({
      inputRoot,
      timeoutSeconds: 900,
      platform: { persistentWorkerKey: 'crash', persistentWorkerProtocol: 'json' },
      command: {
        arguments: [process.execPath, 'tools/worker.js', `--${marks.worker}`, '@a.args'],
        outputFiles: ['out/a.TXT'],
      },
    });
  }

  it('containers, processes and work folders of the crashed run are gone when it serves again', async () => {
    const crashed = await startExecutorProcess(executorArgs(workDir, join(dir, 'store')));
    const clients = clientsFor(`127.0.0.1:${crashed.port}`);
    const fx = new ActionFixture(clients);
    const actions = [
      await sleeper(fx, marks.container, { 'container-image': image }),
      await sleeper(fx, marks.warm, { 'container-image': image, dockerReuse: 'True' }),
      await sleeper(fx, marks.local),
      await hangingWorker(fx),
    ];
    const neighbourAction = await sleeper(new ActionFixture(neighbourClients), marks.neighbour, {
      'container-image': image,
    });
    // Never answered: the executor dies under them.
    for (const action of actions) fx.execute(action).catch(() => undefined);
    new ActionFixture(neighbourClients).execute(neighbourAction).catch(() => undefined);
    for (const mark of Object.values(marks)) await waitFor(() => markedProcesses(mark).length > 0, mark);
    const cgroups = markedProcesses(marks.local).flatMap(actionCgroups);
    expect(cgroups.length).toBeGreaterThan(0);
    const neighbourContainers = await containersOf(engine, marks.neighbour);
    expect(neighbourContainers.length).toBe(1);

    process.kill(crashed.pid, 'SIGKILL');
    await crashed.stop(); // waits for the exit; the work folder is the test's (--work-dir), so it stays
    clients.close();

    const restarted = await startExecutorProcess(executorArgs(workDir, join(dir, 'store')));
    try {
      // Swept before it served: nothing to wait for.
      expect.soft(await engine.larderContainers()).toEqual(neighbourContainers);
      for (const mark of [marks.container, marks.warm, marks.local, marks.worker])
        expect.soft(markedProcesses(mark), mark).toEqual([]);
      for (const cgroup of cgroups) expect.soft(existsSync(cgroup), cgroup).toBe(false);
      expect.soft(readdirSync(join(workDir, 'actions')).filter((name) => name !== 'sandbox-probe')).toEqual([]);
      expect.soft(existsSync(join(workDir, 'workers'))).toBe(false);
      const warmTmp = join(workDir, 'docker', 'tmp');
      expect.soft(existsSync(warmTmp) ? readdirSync(warmTmp) : []).toEqual([]);
      // The neighbour's action runs on: not this executor's to sweep.
      expect.soft(markedProcesses(marks.neighbour).length).toBeGreaterThan(0);
      // While it lives, a second process on its work folder is refused (its sweep would take the live one's).
      const second = startExecutorProcess(executorArgs(workDir, join(dir, 'second-store')));
      await expect(second).rejects.toThrow(`--work-dir ${workDir} is in use by process ${restarted.pid}`);
      expect(await engine.larderContainers()).toEqual(neighbourContainers);
    } finally {
      await restarted.stop();
    }
  }, 180_000);

  it('with --sandbox off, the action cgroups it left are killed with whatever runs in them', async () => {
    const args = [...executorArgs(join(dir, 'unsandboxed-work'), join(dir, 'unsandboxed-store')), '--sandbox', 'off'];
    const mark = newMark('crash-unsandboxed');
    const crashed = await startExecutorProcess(args);
    const clients = clientsFor(`127.0.0.1:${crashed.port}`);
    const fx = new ActionFixture(clients);
    fx.execute(await sleeper(fx, mark)).catch(() => undefined);
    try {
      await waitFor(() => markedProcesses(mark).length > 0, mark);
      const cgroups = markedProcesses(mark).flatMap(actionCgroups);
      expect(cgroups.length).toBeGreaterThan(0);
      process.kill(crashed.pid, 'SIGKILL');
      await crashed.stop();
      clients.close();
      // No sandbox took it down with the executor: only the sweep can.
      expect(markedProcesses(mark).length).toBeGreaterThan(0);
      const restarted = await startExecutorProcess(args);
      try {
        expect.soft(markedProcesses(mark)).toEqual([]);
        for (const cgroup of cgroups) expect.soft(existsSync(cgroup), cgroup).toBe(false);
      } finally {
        await restarted.stop();
      }
    } finally {
      killMarked(mark);
    }
  }, 120_000);
});

/** Resolves once `check` holds; fails after START_LIMIT_MS. */
async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + START_LIMIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${START_LIMIT_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The cgroup folders (every hierarchy) of a process larder put in an action cgroup (`…/action-…`). */
function actionCgroups(pid: number): string[] {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  return lines
    .map((line) => {
      const [, controllers, path] = line.split(':');
      const hierarchy = controllers === '' ? '' : controllers!.split(',').find((c) => !c.startsWith('name='));
      return hierarchy === undefined || !/\/action-[^/]+$/.test(path!)
        ? null
        : join('/sys/fs/cgroup', hierarchy, path!);
    })
    .filter((path): path is string => path !== null);
}

/** IDs of the containers holding a process carrying `mark`. */
async function containersOf(engine: TestEngine, mark: string): Promise<string[]> {
  const pids = new Set(markedProcesses(mark));
  const found: string[] = [];
  for (const id of await engine.larderContainers()) {
    const top = await engine.api.call<{ Processes: string[][]; Titles: string[] }>('GET', `/containers/${id}/top`);
    const at = top.Titles.indexOf('PID');
    if (top.Processes.some((row) => pids.has(Number(row[at])))) found.push(id);
  }
  return found;
}
