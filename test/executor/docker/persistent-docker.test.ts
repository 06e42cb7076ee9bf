// Remote persistent workers on the docker runner, against a real private Docker engine and an image with Node in
// it: the worker is a long-lived exec in a kept container, serves many actions, and silos never share a container.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import type { Digest } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { WORKSPACE_TEMPLATE } from '../../bazel/bazel.ts';
import { startTestServer, type TestServer } from '../helpers.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';
import { markerOf } from './images.ts';

const haveDocker = dockerAvailable();
const JSON_WORKER = readFileSync(join(WORKSPACE_TEMPLATE, 'tools/upper_worker.js'));

describe.runIf(haveDocker)('remote persistent workers in containers', () => {
  let engine: TestEngine;
  let server: TestServer | undefined;
  let fx: ActionFixture;
  let image: string;

  beforeAll(async () => {
    engine = await startTestEngine(['node']);
    image = `docker://${engine.images.node}`;
    server = await startTestServer({
      args: ['--allow-docker', '--docker-host', engine.host, '--persistent-workers', 'docker', '--concurrency', '2'],
    });
    fx = new ActionFixture(server.clients);
  }, 180_000);
  afterAll(async () => {
    await server?.stop();
    await engine?.stop();
  }, 60_000);

  const stats = () => server!.executor.persistentWorkers!.stats();

  async function workerAction(name: string, silo: string): Promise<Digest> {
    const inputRoot = await fx.tree({
      tools: { 'worker.js': { content: JSON_WORKER, executable: true } },
      in: { [`${name}.txt`]: `content of ${name}\n` },
      [`${name}.args`]: `in/${name}.txt\nout/${name}.TXT\ncat:/etc/larder-image\n`,
    });
    return fx.action({
      inputRoot,
      platform: {
        'container-image': image,
        dockerReuse: 'True',
        persistentWorkerKey: 'upper',
        persistentWorkerProtocol: 'json',
        'cache-silo-key': silo,
      },
      command: {
        arguments: ['/usr/local/bin/node', 'tools/worker.js', `@${name}.args`],
        outputFiles: [`out/${name}.TXT`],
      },
    });
  }

  it('one worker in one container serves many actions, and reads the image it runs in', async () => {
    const before = stats();
    for (let i = 0; i < 5; i++) {
      const { response } = await fx.execute(await workerAction(`file${i}`, 'team-a'));
      expect(response.status?.code ?? 0, response.status?.message).toBe(Code.OK);
      expect(response.result!.exitCode, (await fx.read(response.result!.stderrDigest)).toString()).toBe(0);
      expect((await fx.read(response.result!.outputFiles[0]!.digest)).toString()).toBe(`CONTENT OF FILE${i}\n`);
      expect((await fx.read(response.result!.stderrDigest)).toString()).toContain(markerOf('node'));
    }
    expect(stats().started - before.started).toBe(1);
    expect(stats().requests - before.requests).toBe(5);
  });

  it('different cache-silo-keys never share a worker process or a container', async () => {
    const containersBefore = new Set(await engine.larderContainers());
    const before = stats().started;
    const a = await fx.execute(await workerAction('silo-a', 'silo-a'));
    const b = await fx.execute(await workerAction('silo-b', 'silo-b'));
    for (const { response } of [a, b]) expect(response.result!.exitCode).toBe(0);
    expect(stats().started - before).toBe(2);
    const added = (await engine.larderContainers()).filter((id) => !containersBefore.has(id));
    expect(added.length).toBe(2);
  });
});
