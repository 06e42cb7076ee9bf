// A pool's default image (`--default-container-image docker://IMAGE`) on a real `larder worker` of a fleet (one
// Redis, one frontend), on a private Docker engine: an action that names no image runs in the pool's image, in a
// container the docker runner makes (and removes); one that names an image keeps its own. The worker still takes
// image-less actions (it offers the `local` runner kind), so the frontend routes them to it.
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExecutorConfig } from '../../../executor/config/executor-options.ts';
import { parseWorkerConfig } from '../../../executor/config/worker-options.ts';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { splitPlatform, withDefaultImage } from '../../../executor/reapi/platform.ts';
import { PlatformSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { type Clients, clientsFor, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from '../fleet/fleet.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';
import { markerOf } from './images.ts';

describe('--default-container-image is checked at start', () => {
  const worker = ['--queue', 'redis://127.0.0.1:1', '--frontend', 'grpc://127.0.0.1:1'];

  it('needs the docker runner', () => {
    expect(() => parseWorkerConfig([...worker, '--default-container-image', 'docker://busybox:1'], {})).toThrow(
      /--default-container-image needs --allow-docker/,
    );
    expect(() => parseExecutorConfig(['--default-container-image', 'docker://busybox:1'], {})).toThrow(
      /needs --allow-docker/,
    );
  });

  it('is a Docker reference as an action would name it', () => {
    for (const bad of ['busybox', 'docker://Busybox', 'docker://../../containers/json'])
      expect(() => parseExecutorConfig(['--allow-docker', '--default-container-image', bad], {})).toThrow(
        /--default-container-image: container-image/,
      );
    const config = parseWorkerConfig([...worker, '--allow-docker'], {
      LARDER_DEFAULT_CONTAINER_IMAGE: 'docker://registry.example:5000/build/image:7',
    });
    expect(config.execution.docker.defaultImage).toBe('docker://registry.example:5000/build/image:7');
  });
});

describe('withDefaultImage', () => {
  const IMAGE = 'docker://pool/image:1';
  const platform = (properties: Record<string, string>) =>
    splitPlatform(
      create(PlatformSchema, { properties: Object.entries(properties).map(([name, value]) => ({ name, value })) }),
      undefined,
    );

  it('gives an action that names no image the pool image and the docker runner, keeping its other properties', () => {
    const ran = withDefaultImage(platform({ Pool: 'big', dockerReuse: 'True' }), IMAGE);
    expect(ran.runner).toBe('docker');
    expect(Object.fromEntries(ran.options)).toEqual({ dockerReuse: 'True', 'container-image': IMAGE });
    expect(Object.fromEntries(ran.constraints)).toEqual({ Pool: ['big'] });
  });

  it('leaves an action that names an image, or brings its own root, as it is; and every action without a default', () => {
    const own: Record<string, string>[] = [{ 'container-image': 'docker://own:2' }, { 'filesystem-root': 'input' }];
    for (const properties of own) {
      const asked = platform(properties);
      expect(withDefaultImage(asked, IMAGE)).toBe(asked);
    }
    const local = platform({});
    expect(withDefaultImage(local, null)).toBe(local);
  });
});

const ready = haveRedis() && dockerAvailable();

describe.runIf(ready)('a larder worker with a default image', () => {
  const dir = reachableTempDir('larder-default-image-');
  let engine: TestEngine;
  let redis: TestRedis;
  let frontend: ExecutorProcess;
  let worker: WorkerProcess;
  let clients: Clients;
  let fx: ActionFixture;

  beforeAll(async () => {
    [engine, redis] = await Promise.all([startTestEngine(['busybox']), startRedis()]);
    frontend = await startFrontend({ redis: redis.url, store: `${dir}/store` });
    worker = await startWorker({
      redis: redis.url,
      frontend: frontend.url,
      args: [
        '--allow-docker',
        '--docker-host',
        engine.host,
        '--default-container-image',
        `docker://${engine.images.busybox}`,
      ],
    });
    clients = clientsFor(`127.0.0.1:${frontend.port}`);
    fx = new ActionFixture(clients);
  }, 120_000);

  afterAll(async () => {
    clients?.close();
    await worker?.stop();
    await frontend?.stop();
    await redis?.close();
    await engine?.stop();
  }, 60_000);

  const where = async (platform: Record<string, string> | undefined, salt: string) => {
    const action = await fx.action({
      command: { arguments: ['/bin/sh', '-c', 'cat /etc/larder-image 2>/dev/null || echo host; id -u'] },
      platform,
      salt,
    });
    const { response } = await fx.execute(action, { skipCacheLookup: true });
    expect(response.status?.code ?? Code.OK, response.status?.message).toBe(Code.OK);
    expect(response.result!.exitCode, (await fx.read(response.result!.stderrDigest)).toString()).toBe(0);
    return (await fx.read(response.result!.stdoutDigest)).toString();
  };

  it('runs an action that names no image in the pool image, as an unprivileged user, and leaves no container', async () => {
    const out = await where(undefined, 'no-image');
    expect(out.startsWith(markerOf('busybox')), out).toBe(true);
    expect(out.trim().split('\n').at(-1)).not.toBe('0');
    expect(await engine.larderContainers()).toEqual([]);
  });

  it('with dockerReuse=True, in a warm container of the pool image', async () => {
    const out = await where({ dockerReuse: 'True' }, 'reuse');
    expect(out.startsWith(markerOf('busybox')), out).toBe(true);
    expect((await engine.larderContainers()).length).toBe(1);
  });

  it('an action that names an image keeps it (an image this engine lacks fails, naming it)', async () => {
    const action = await fx.action({
      command: { arguments: ['/bin/true'] },
      platform: { 'container-image': 'docker://larder-test/absent:1' },
    });
    const { response } = await fx.execute(action, { skipCacheLookup: true });
    expect(response.result!.exitCode).toBe(127);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toContain('larder-test/absent:1');
  });
});
