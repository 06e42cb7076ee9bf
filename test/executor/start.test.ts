// Starting `larder executor` when a later step fails: everything the earlier steps opened (the queue's Redis
// connections, the workers registered in it, the partial-upload folder) is closed again, and the error says what
// failed. Against a real redis-server, a real `larder executor` process and startExecutor in this process.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExecutor } from '../../executor/start.ts';
import { parseExecutorConfig } from '../../executor/config/executor-options.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { markedProcesses, newMark } from '../helpers/marked-processes.ts';
import { haveRedis, startRedis, type TestRedis } from '../helpers/redis.ts';
import { larderCode } from '../helpers/errors.ts';
import { failUnlessRoot, needsRoot, REPO_ROOT } from '../helpers/tools.ts';

describe.runIf(haveRedis())('executor start-up that fails part way', () => {
  const dir = tempDir('larder-executor-start-');
  let redis: TestRedis;
  let inspector: Redis;
  let taken: Server;
  let takenPort: number;

  beforeAll(async () => {
    // Actions run as another user here (root's default): the work folders inside must be reachable.
    chmodSync(dir.path, 0o755);
    redis = await startRedis();
    inspector = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await inspector.connect();
    taken = createServer();
    takenPort = await new Promise<number>((resolve, reject) => {
      taken.once('error', reject);
      taken.listen(0, '127.0.0.1', () => resolve((taken.address() as { port: number }).port));
    });
  });
  afterAll(async () => {
    await new Promise((resolve) => taken?.close(resolve));
    inspector?.disconnect();
    await redis?.close();
    dir.remove();
  });

  /** Names of the connections larder holds open on the test's redis-server (`larder-commands`, …). */
  const larderConnections = async (): Promise<string[]> => {
    const list = (await inspector.client('LIST')) as string;
    return [...list.matchAll(/ name=(larder-\S*)/g)].map((m) => m[1]!);
  };

  /** The connections a process closed a moment ago may take Redis a moment to see go: waits, bounded. */
  const noLarderConnections = async (): Promise<string[]> => {
    const deadline = Date.now() + 5_000;
    for (let i = 0; i < 100; i++) {
      const names = await larderConnections();
      if (names.length === 0 || Date.now() > deadline) return names;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return larderConnections();
  };

  const registeredWorkers = () => inspector.hkeys('larder:workers');

  it('a real executor whose --listen port is taken exits 2 saying so, leaving no upload folder and no worker', async () => {
    const mark = newMark('start');
    const home = join(dir.path, mark);
    const tmp = join(home, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/larder.js'),
        'executor',
        '--queue',
        redis.url,
        '--listen',
        `127.0.0.1:${takenPort}`,
        '--store',
        'memory',
        '--work-dir',
        join(home, 'work'),
        '--log-level',
        'warn',
      ],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, TMPDIR: tmp, LARDER_LOG_FORMAT: 'text' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const status = await new Promise<number | string | null>((resolve) => {
      const timer = setTimeout(() => {
        process.kill(child.pid!, 'SIGKILL');
        resolve('did not exit in 60 s');
      }, 60_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve(code ?? signal);
      });
    });

    expect({ status, stderr }).toMatchObject({ status: 2 });
    expect(stderr).toContain(`larder: --listen 127.0.0.1:${takenPort}: address already in use`);
    expect(stderr, 'a start-up error is a message, not a stack trace').not.toMatch(/\n\s+at /);
    expect(readdirSync(join(tmp, 'larder-uploads')), 'partial-upload folders left in TMPDIR').toEqual([]);
    expect(await registeredWorkers(), 'workers still registered in the queue').toEqual([]);
    expect(await noLarderConnections()).toEqual([]);
    expect(markedProcesses(mark), 'processes of that executor still running').toEqual([]);
  }, 90_000);

  /**
   * startExecutor with `args`, which must fail at one step with `message`; then nothing of that start is open: no
   * connection on the queue's Redis, no worker registered in it, no partial-upload folder.
   */
  const failedStart = async (name: string, args: string[], message: string | RegExp) => {
    const home = join(dir.path, `in-process-${name}`);
    const config = parseExecutorConfig(
      [
        '--queue',
        redis.url,
        '--store',
        `disk:${join(home, 'store')}`,
        '--work-dir',
        join(home, 'work'),
        '--log-level',
        'silent',
        ...args,
      ],
      {},
    );
    const error = await startExecutor(config, { announce: false }).then(
      () => new Error(`the executor started, though its ${name} step should have failed`),
      (err: unknown) => err,
    );
    expect(larderCode(error)).toBe('invalid_argument');
    expect((error as Error).message).toMatch(message);
    expect(await noLarderConnections()).toEqual([]);
    expect(await registeredWorkers(), 'workers still registered in the queue').toEqual([]);
    expect(readdirSync(join(home, 'store', 'uploads')), 'partial-upload folders left').toEqual([]);
  };

  // In a process that goes on (a program embedding larder, or the tests), nothing of the failed start stays open,
  // whichever step failed: the gRPC port's, the metrics port's or the workers'.
  it('startExecutor failing at --listen closes the queue, the workers and the upload area', async () => {
    await failedStart(
      'listen',
      ['--listen', `127.0.0.1:${takenPort}`],
      `--listen 127.0.0.1:${takenPort}: address already in use`,
    );
  });

  it('startExecutor failing at --metrics-listen closes the queue, the workers and the upload area', async () => {
    await failedStart(
      'metrics',
      ['--listen', '127.0.0.1:0', '--metrics-listen', `127.0.0.1:${takenPort}`],
      `--metrics-listen 127.0.0.1:${takenPort}: address already in use`,
    );
  });

  const RUNS_AS_OTHERS =
    'actions run as other users only when larder runs as root, so only then can a work folder be closed to them';
  it.runIf(needsRoot(RUNS_AS_OTHERS))(
    'startExecutor failing at the workers (a work folder actions cannot enter) closes the queue and the upload area',
    async () => {
      failUnlessRoot(RUNS_AS_OTHERS);
      mkdirSync(join(dir.path, 'closed'), { recursive: true, mode: 0o700 });
      await failedStart(
        'workers',
        ['--listen', '127.0.0.1:0', '--work-dir', join(dir.path, 'closed', 'work')],
        /^--work-dir .*closed\/work\/actions: actions run as uid \d+, who cannot enter /,
      );
    },
  );
});
