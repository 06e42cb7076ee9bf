// Persistent-worker affinity across a fleet, all real: one redis-server, one frontend, two `larder worker`
// processes with remote persistent workers on. Once one worker has run an action of a persistentWorkerKey (its
// worker process stays up, warm), the key's next actions go to it while it has a free slot, not to the other.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { WORKSPACE_TEMPLATE } from '../../bazel/bazel.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { type Clients, clientsFor, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

const JSON_WORKER = readFileSync(join(WORKSPACE_TEMPLATE, 'tools/upper_worker.js'));

describe.runIf(haveRedis())('persistent-worker affinity in a fleet of real worker processes', () => {
  const dir = reachableTempDir('larder-fleet-affinity-');
  let redis: TestRedis;
  let front: ExecutorProcess;
  let workers: WorkerProcess[] = [];
  let clients: Clients;
  let fx: ActionFixture;

  beforeAll(async () => {
    redis = await startRedis();
    front = await startFrontend({ redis: redis.url, store: join(dir, 'store') });
    workers = await Promise.all(
      [0, 1].map(() =>
        startWorker({
          redis: redis.url,
          frontend: front.url,
          concurrency: 2,
          args: ['--persistent-workers', 'local'],
        }),
      ),
    );
    clients = clientsFor(`127.0.0.1:${front.port}`);
    fx = new ActionFixture(clients);
  }, 120_000);

  afterAll(async () => {
    clients?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await front?.stop();
    await redis?.close();
  }, 60_000);

  /** An upper-casing action of the JSON test worker under persistentWorkerKey `key`; distinct for each name. */
  async function workerAction(name: string, key: string): Promise<Digest> {
    const inputRoot = await fx.tree({
      tools: { 'worker.js': { content: JSON_WORKER, executable: true } },
      in: { [`${name}.txt`]: `content of ${name}\n` },
      [`${name}.args`]: `in/${name}.txt\nout/${name}.TXT\n`,
    });
    return fx.action({
      inputRoot,
      platform: { persistentWorkerKey: key, persistentWorkerProtocol: 'json' },
      command: { arguments: [process.execPath, 'tools/worker.js', `@${name}.args`], outputFiles: [`out/${name}.TXT`] },
    });
  }

  /** Runs the action and returns the name of the worker that ran it (ExecutedActionMetadata.worker). */
  async function ranOn(action: Digest, name: string): Promise<string> {
    const { response } = await fx.execute(action, { skipCacheLookup: true });
    expect(response.status?.code ?? 0, response.status?.message).toBe(0);
    expect(response.result?.exitCode).toBe(0);
    expect((await fx.read(response.result!.outputFiles[0]!.digest)).toString()).toBe(
      `CONTENT OF ${name.toUpperCase()}\n`,
    );
    return response.result!.executionMetadata!.worker;
  }

  it('twenty actions of one persistentWorkerKey go to the worker warm for it, while it has a free slot', async () => {
    const key = `upper-${Date.now()}`;
    // Whichever worker runs the first action starts the key's worker process and is warm from then on.
    const warm = await ranOn(await workerAction('first', key), 'first');
    expect(workers.map((w) => w.name)).toContain(warm);
    const actions = [];
    for (let i = 0; i < 20; i++) actions.push(await workerAction(`file${i}`, key));
    const ran = [];
    // One at a time: the warm worker always has a free slot (concurrency 2), and its worker process is idle.
    for (let i = 0; i < 20; i++) ran.push(await ranOn(actions[i]!, `file${i}`));
    expect(ran).toEqual(Array(20).fill(warm));
  }, 120_000);
});
