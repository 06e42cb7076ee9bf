// dockerReuse=True against a real, private Docker engine: later actions of the same image and silo run as execs
// in one warm container (same hostname, which the engine sets to the container ID), with /tmp emptied between
// them; a container whose action failed, timed out, was OOM-killed or left a process behind is removed instead;
// silos never share one; the pool is bounded; and closing the executor removes every container.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { startTestServer, type TestServer } from '../helpers.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';

const haveDocker = dockerAvailable();
const POOL_SIZE = 2;

describe.runIf(haveDocker)('dockerReuse=True: warm containers', () => {
  let engine: TestEngine;
  let server: TestServer | undefined;
  let fx: ActionFixture;
  let image: string;
  let salt = 0;

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
        '--docker-pool-size',
        String(POOL_SIZE),
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

  /** Runs `script` with dockerReuse in `silo`; returns the response, stdout and the container's hostname. */
  async function run(
    script: string,
    options: { silo?: string; timeoutSeconds?: number; inputs?: Record<string, string> } = {},
  ) {
    const actionDigest = await fx.action({
      salt: String(++salt), // every action distinct: no merging, no cache hit
      doNotCache: true,
      timeoutSeconds: options.timeoutSeconds,
      inputRoot: options.inputs === undefined ? undefined : await fx.tree(options.inputs),
      platform: { 'container-image': image, dockerReuse: 'True', 'cache-silo-key': options.silo ?? 'team-a' },
      command: { arguments: ['/bin/sh', '-c', `hostname; ${script}`] },
    });
    const { response } = await fx.execute(actionDigest);
    const [hostname = '', ...rest] = (await fx.read(response.result?.stdoutDigest)).toString().split('\n');
    return { response, hostname, stdout: rest.join('\n') };
  }

  const live = async () => (await engine.larderContainers()).map((id) => id.slice(0, 12));

  it('two actions run in one container, each in its own staged directory, and /tmp is emptied between them', async () => {
    // (The work folder of this test lives in the host's /tmp, so the engine made its mount point in ours: skip it.)
    const tmp = "ls -A /tmp | grep -v '^larder-executor-test-'";
    const first = await run(`cat in.txt; pwd; echo secret > /tmp/left; ${tmp}`, {
      inputs: { 'in.txt': 'first input\n' },
    });
    expect(first.response.result!.exitCode).toBe(0);
    expect(first.stdout).toMatch(/^first input\n.*\/actions\/[0-9a-f-]{36}\/root\nleft\n$/);
    const second = await run(`cat in.txt; ${tmp}; id -u`, { inputs: { 'in.txt': 'second input\n' } });
    expect(second.hostname).toBe(first.hostname);
    const [input, uid] = second.stdout.split('\n');
    expect(input).toBe('second input');
    expect(Number(uid)).toBeGreaterThan(0); // the action's own unprivileged uid, not the warm container's root
    expect(await live()).toContain(first.hostname);
  });

  it('a container is not reused after a non-zero exit: it is removed', async () => {
    const failed = await run('exit 3');
    expect(failed.response.result!.exitCode).toBe(3);
    expect(await live()).not.toContain(failed.hostname);
    const next = await run('true');
    expect(next.hostname).not.toBe(failed.hostname);
  });

  it("a timed-out action's container is removed with everything in it", async () => {
    const timedOut = await run('sleep 60 & sleep 60', { timeoutSeconds: 1 });
    expect(timedOut.response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(await live()).not.toContain(timedOut.hostname);
    expect((await run('true')).hostname).not.toBe(timedOut.hostname);
  });

  it('an action that leaves a process behind ends when its command does, and its container is removed', async () => {
    const started = Date.now();
    const leaver = await run('sleep 120 > /dev/null 2>&1 &');
    expect(leaver.response.result!.exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await live()).not.toContain(leaver.hostname);
  });

  it('an action that holds its output open from the background ends within seconds of its command', async () => {
    const started = Date.now();
    const holder = await run('sleep 120 &');
    expect(holder.response.result!.exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await live()).not.toContain(holder.hostname);
  });

  it('an OOM-killed exec is reported (exit 137 and a note) and its container removed', async () => {
    const oom = await run('dd if=/dev/zero of=/dev/null bs=256M count=1');
    expect(oom.response.result!.exitCode).toBe(137);
    expect((await fx.read(oom.response.result!.stderrDigest)).toString()).toMatch(/out of memory/);
    expect(await live()).not.toContain(oom.hostname);
  });

  it('different cache-silo-keys never share a container, and the pool stays within --docker-pool-size', async () => {
    const a = await run('true', { silo: 'silo-a' });
    const b = await run('true', { silo: 'silo-b' });
    expect(a.hostname).not.toBe(b.hostname);
    expect((await run('true', { silo: 'silo-a' })).hostname).toBe(a.hostname);
    const c = await run('true', { silo: 'silo-c' });
    expect([a.hostname, b.hostname]).not.toContain(c.hostname);
    const now = await live();
    expect(now.length).toBeLessThanOrEqual(POOL_SIZE);
    expect(now).toContain(c.hostname);
  });

  it('more parallel actions than the pool holds all run (they wait for a container)', async () => {
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => run(`echo ${n}`, { silo: `parallel-${n % 3}` })));
    for (const [i, r] of results.entries()) expect(r.stdout).toBe(`${i + 1}\n`);
    expect((await live()).length).toBeLessThanOrEqual(POOL_SIZE);
  });

  it('closing the executor removes every container it started', async () => {
    await run('true');
    expect((await live()).length).toBeGreaterThan(0);
    await server!.stop();
    server = undefined;
    expect(await engine.larderContainers()).toEqual([]);
  });
});
