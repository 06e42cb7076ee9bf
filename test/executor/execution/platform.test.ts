// Platform routing with two in-process worker pools, one labelled Arch=amd64 and one Arch=arm64 (the label
// stands in for a genuinely arm64 host here; the fleet suite runs a real one under qemu).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { codeOf, drain, startTestServer, type TestServer } from '../helpers.ts';
import { ActionFixture } from './fixture.ts';

describe('platform routing', () => {
  let server: TestServer;
  let fx: ActionFixture;

  beforeAll(async () => {
    server = await startTestServer({
      pools: [
        {
          name: 'amd64',
          labels: new Map([
            ['Arch', ['amd64']],
            ['Pool', ['default']],
          ]),
          workers: 1,
          concurrency: 2,
        },
        {
          name: 'arm64',
          labels: new Map([
            ['Arch', ['arm64']],
            ['Pool', ['default']],
          ]),
          workers: 1,
          concurrency: 2,
        },
      ],
    });
    fx = new ActionFixture(server.clients);
  });
  afterAll(() => server?.stop());

  async function workerOf(platform: Record<string, string>, salt: string): Promise<string> {
    const actionDigest = await fx.action({ platform, salt, command: { arguments: ['/bin/true'] } });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code ?? 0, response.status?.message).toBe(Code.OK);
    return response.result!.executionMetadata!.worker;
  }

  it('actions that ask for arm64 run only on the arm64 pool, amd64 ones only on the amd64 pool', async () => {
    for (let i = 0; i < 6; i++) {
      expect(await workerOf({ Arch: 'arm64', OSFamily: 'linux' }, `arm-${i}`)).toMatch(/\/arm64\/0$/);
      // Other spellings of the same architecture route the same way.
      expect(await workerOf({ Arch: i % 2 === 0 ? 'amd64' : 'x86_64', OSFamily: 'Linux' }, `amd-${i}`)).toMatch(
        /\/amd64\/0$/,
      );
    }
  });

  it('runner options never route: a persistentWorkerKey or cache-silo-key still runs on a matching worker', async () => {
    expect(
      await workerOf({ Arch: 'arm64', persistentWorkerKey: 'abc', 'cache-silo-key': 'team-a' }, 'options'),
    ).toMatch(/\/arm64\/0$/);
  });

  it('OSFamily=windows fails at once with FAILED_PRECONDITION naming the property', async () => {
    const actionDigest = await fx.action({ platform: { OSFamily: 'windows' }, command: { arguments: ['/bin/true'] } });
    const failure = await codeOf(drain(server.clients.execution.execute({ actionDigest })));
    expect(failure.code).toBe(Code.FAILED_PRECONDITION);
    expect(failure.details).toContain('OSFamily=windows');
    expect((await server.executor.scheduler!.stats()).queued).toBe(0);
  });

  it('a property no pool offers, and a container image with no docker runner, fail fast and say which', async () => {
    const gpu = await fx.action({ platform: { Arch: 'arm64', gpu: 'yes' }, command: { arguments: ['/bin/true'] } });
    const noGpu = await codeOf(drain(server.clients.execution.execute({ actionDigest: gpu })));
    expect(noGpu.code).toBe(Code.FAILED_PRECONDITION);
    expect(noGpu.details).toContain('gpu=yes');
    const image = await fx.action({
      platform: { 'container-image': 'docker://debian:12' },
      command: { arguments: ['/bin/true'] },
    });
    const noDocker = await codeOf(drain(server.clients.execution.execute({ actionDigest: image })));
    expect(noDocker.code).toBe(Code.FAILED_PRECONDITION);
    expect(noDocker.details).toContain('docker');
  });

  it('the Command platform counts when the Action has none (Bazel 4 sends both)', async () => {
    const actionDigest = await fx.action({
      command: { arguments: ['/bin/true'], platform: { properties: [{ name: 'Arch', value: 'arm64' }] } },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.executionMetadata!.worker).toMatch(/\/arm64\/0$/);
  });
});
