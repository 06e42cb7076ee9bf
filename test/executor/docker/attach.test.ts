// DockerRunner.leaseContainer + ContainerLease.attach, the API persistent workers use: a long-lived process in a
// warm container of the node image, its stdio attached over the engine's hijacked stream (stdin in, stdout and
// stderr demultiplexed out), EOF by half-close, kill() by the exec's host PID, and the lease's release.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../shared/log.ts';
import { DockerEngine, DockerRunner } from '../../../executor/runner/docker/index.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';
import { markerOf } from './images.ts';

const haveDocker = dockerAvailable();

describe.runIf(haveDocker)('a long-lived attached exec in a warm container', () => {
  let engine: TestEngine;
  let runner: DockerRunner;
  let dir: string;
  let options: Map<string, string>;

  beforeAll(async () => {
    engine = await startTestEngine(['node']);
    dir = mkdtempSync(join(tmpdir(), 'larder-docker-attach-'));
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'actions'));
    runner = new DockerRunner({
      engine: DockerEngine.fromHost(engine.host),
      limits: { memoryBytes: 512 * 1024 * 1024, pids: 256 },
      actionsDir: join(dir, 'actions'),
      workDir: join(dir, 'docker'),
      maxWarmContainers: 2,
      idleMs: 60_000,
      owner: 'attachtest',
      log: createLogger('silent'),
    });
    await runner.start();
    options = new Map([
      ['container-image', `docker://${engine.images.node}`],
      ['cache-silo-key', 'team-a'],
    ]);
  }, 120_000);
  afterAll(async () => {
    await runner?.close();
    await engine?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('talks to a process over stdin/stdout, sees its stderr and exit code after EOF, and the container is reused', async () => {
    const lease = await runner.leaseContainer(options, null);
    const worker = await lease.attach({
      argv: [
        'node',
        '-e',
        "require('fs').readFileSync('/etc/larder-image');process.stdin.on('data',d=>process.stdout.write(String(d).toUpperCase()));process.stdin.on('end',()=>{process.stderr.write('bye\\n');process.exitCode=5})",
      ],
      env: { WORKER: 'yes' },
      cwd: '/',
    });
    const firstReply = new Promise<string>((resolve) =>
      worker.stdout.once('data', (d: Buffer) => resolve(d.toString())),
    );
    worker.stdin.write('hello worker\n');
    expect(await firstReply).toBe('HELLO WORKER\n');
    const rest = text(worker.stdout);
    const stderr = text(worker.stderr);
    worker.stdin.write('second\n');
    worker.stdin.end();
    expect(await worker.exited).toBe(5);
    expect(await rest).toBe('SECOND\n');
    expect(await stderr).toBe('bye\n');
    await lease.release(true);
    const again = await runner.leaseContainer(options, null);
    expect(again.containerId).toBe(lease.containerId);
    const cat = await again.attach({ argv: ['cat', '/etc/larder-image'], env: {}, cwd: '/' });
    expect(await text(cat.stdout)).toBe(markerOf('node'));
    expect(await cat.exited).toBe(0);
    await again.release(true);
  });

  it('kill() ends a process that ignores its stdin, and release(false) removes the container', async () => {
    const lease = await runner.leaseContainer(options, null);
    const worker = await lease.attach({ argv: ['node', '-e', 'setInterval(() => {}, 1000)'], env: {}, cwd: '/' });
    await worker.kill();
    expect(await worker.exited).toBe(137);
    await lease.release(false);
    expect(await engine.larderContainers()).not.toContain(lease.containerId);
  });

  it('different silos get different containers', async () => {
    const a = await runner.leaseContainer(options, null);
    const b = await runner.leaseContainer(new Map([...options, ['cache-silo-key', 'team-b']]), null);
    expect(a.containerId).not.toBe(b.containerId);
    await Promise.all([a.release(true), b.release(true)]);
  });

  it('an absent image is refused naming it', async () => {
    await expect(
      runner.leaseContainer(new Map([['container-image', 'docker://larder-test/absent:2']]), null),
    ).rejects.toThrow(/larder-test\/absent:2/);
  });
});
