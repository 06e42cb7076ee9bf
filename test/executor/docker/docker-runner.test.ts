// The docker runner against a real, private Docker engine and a real in-process executor: actions run in a
// local busybox image as an unprivileged user with no network, outputs and exit codes come back, timeouts and OOM
// kills are reported and leave nothing running, a missing image fails fast naming it, and nothing runs without
// --allow-docker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { codeOf, drain, startTestServer, type TestServer } from '../helpers.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';
import { markerOf } from './images.ts';

const haveDocker = dockerAvailable();

describe.runIf(haveDocker)('the docker runner (one container per action)', () => {
  let engine: TestEngine;
  let server: TestServer;
  let fx: ActionFixture;
  let image: string;

  beforeAll(async () => {
    engine = await startTestEngine(['busybox']);
    image = `docker://${engine.images.busybox}`;
    server = await startTestServer({
      args: [
        '--allow-docker',
        '--docker-host',
        engine.host,
        '--docker-memory',
        '64MiB',
        '--docker-pids',
        '256',
        '--concurrency',
        '4',
      ],
    });
    fx = new ActionFixture(server.clients);
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await engine?.stop();
  }, 60_000);

  it("runs the command in the image, as the action's unprivileged uid, with no network, in the staged directory, with the action's environment", async () => {
    const inputRoot = await fx.tree({ src: { 'in.txt': 'from the input root\n' } });
    const actionDigest = await fx.action({
      inputRoot,
      platform: { 'container-image': image },
      command: {
        arguments: [
          '/bin/sh',
          '-c',
          'cat /etc/larder-image; id -u; id -g; ls /sys/class/net; echo "$GREETING"; pwd; mkdir -p out; tr a-z A-Z < src/in.txt > out/upper.txt; echo to-stderr >&2',
        ],
        environmentVariables: [{ name: 'GREETING', value: 'hello from the action' }],
        outputFiles: ['out/upper.txt'],
      },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code ?? 0, response.status?.message).toBe(Code.OK);
    const result = response.result!;
    expect(result.exitCode).toBe(0);
    const lines = (await fx.read(result.stdoutDigest)).toString().split('\n');
    expect(lines[0]).toBe(markerOf('busybox').trim());
    // The uid larder gives the action (one per slot, as root: --run-as-uids), never root; its gid alike.
    expect(Number(lines[1])).toBeGreaterThan(0);
    expect(lines[2]).toBe(lines[1]);
    expect(lines[3]).toBe('lo'); // no interface but loopback
    expect(lines[4]).toBe('hello from the action');
    expect(lines[5]).toMatch(new RegExp(`^${server.dir}/work/actions/[0-9a-f-]{36}/root$`)); // the exec root, at the same path
    expect((await fx.read(result.stderrDigest)).toString()).toBe('to-stderr\n');
    expect((await fx.read(result.outputFiles[0]!.digest)).toString()).toBe('FROM THE INPUT ROOT\n');
    expect(await engine.larderContainers()).toEqual([]); // removed after the run
  });

  it('reports the exit code of a failing command, with its output', async () => {
    const actionDigest = await fx.action({
      platform: { 'container-image': image },
      command: { arguments: ['/bin/sh', '-c', 'echo failing >&2; exit 7'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code ?? 0).toBe(Code.OK);
    expect(response.result!.exitCode).toBe(7);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toBe('failing\n');
  });

  it('a relative program path is the staged input under the working directory', async () => {
    const inputRoot = await fx.tree({
      tools: { 'tool.sh': { content: '#!/bin/sh\necho tool in $(pwd)\n', executable: true } },
    });
    const actionDigest = await fx.action({
      inputRoot,
      platform: { 'container-image': image },
      command: { arguments: ['tools/tool.sh'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result?.exitCode, response.message).toBe(0);
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toMatch(/^tool in \/.*\/root\n$/);
  });

  it("a program the image lacks is exit 127 with the runtime's reason", async () => {
    const actionDigest = await fx.action({
      platform: { 'container-image': image },
      command: { arguments: ['/usr/bin/no-such-tool'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(127);
    expect(response.message).toContain('no-such-tool');
  });

  it('a timeout kills the container: DEADLINE_EXCEEDED, with what it printed, and nothing is left running', async () => {
    const started = Date.now();
    const actionDigest = await fx.action({
      timeoutSeconds: 1,
      platform: { 'container-image': image },
      command: { arguments: ['/bin/sh', '-c', 'echo before; sleep 60 & sleep 60'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe('before\n');
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await engine.larderContainers()).toEqual([]);
  });

  it('an action past --docker-memory is OOM-killed and told so: exit 137 and a note on stderr', async () => {
    const actionDigest = await fx.action({
      platform: { 'container-image': image },
      command: { arguments: ['/bin/sh', '-c', 'dd if=/dev/zero of=/dev/null bs=256M count=1'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(137);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toMatch(
      /killed for running out of memory .*64 MiB/,
    );
  });

  it('an image that is absent and cannot be pulled fails fast, naming the image', async () => {
    const started = Date.now();
    const actionDigest = await fx.action({
      platform: { 'container-image': 'docker://larder-test/absent:1' },
      command: { arguments: ['/bin/true'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(127);
    expect(response.message).toContain('larder-test/absent:1');
    expect((await fx.read(response.result!.stderrDigest)).toString()).toContain('larder-test/absent:1');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('parallel first uses of an image share one preparation, and all run', async () => {
    const digests = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        fx.action({ platform: { 'container-image': image }, command: { arguments: ['/bin/sh', '-c', `echo ${n}`] } }),
      ),
    );
    const responses = await Promise.all(digests.map((d) => fx.execute(d)));
    for (const [i, { response }] of responses.entries())
      expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe(`${i + 1}\n`);
  });

  it('options it cannot honour are INVALID_ARGUMENT naming them (root, privileged, an unknown network)', async () => {
    for (const [name, value] of [
      ['dockerRunAsRoot', 'True'],
      ['dockerPrivileged', 'True'],
      ['dockerNetwork', 'bridge2'],
    ] as const) {
      const actionDigest = await fx.action({
        platform: { 'container-image': image, [name]: value },
        command: { arguments: ['/bin/true'] },
      });
      const { response } = await fx.execute(actionDigest);
      expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
      expect(response.status?.message).toContain(name);
    }
  });
});

describe('without --allow-docker', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => server?.stop());

  it('an action asking for a container image fails at once with FAILED_PRECONDITION naming the docker runner', async () => {
    const fx = new ActionFixture(server.clients);
    const actionDigest = await fx.action({
      platform: { 'container-image': 'docker://larder-test/busybox:1' },
      command: { arguments: ['/bin/true'] },
    });
    const failure = await codeOf(drain(server.clients.execution.execute({ actionDigest })));
    expect(failure.code).toBe(Code.FAILED_PRECONDITION);
    expect(failure.details).toContain('docker runner');
  });
});
