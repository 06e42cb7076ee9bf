// `larder worker`'s start-up against a real frontend process and a real redis-server: a step that fails after the
// queue's connections were opened closes them again, instead of leaving them open in the process.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWorkerConfig } from '../../../executor/config/worker-options.ts';
import { startWorkerProcess } from '../../../executor/start-worker.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';

/** The connections larder holds open on `raw`'s Redis (it names them larder-ROLE). */
async function larderClients(raw: Redis): Promise<string[]> {
  const list = (await raw.client('LIST')) as string;
  return list.split('\n').filter((line) => / name=larder-/.test(line));
}

describe.runIf(haveRedis())('larder worker start-up', () => {
  let redis: TestRedis;
  let frontend: ExecutorProcess;
  let raw: Redis;
  const home = reachableTempDir('larder-start-worker-');

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
    frontend = await startExecutorProcess(['--store', `disk:${join(home, 'store')}`]);
  }, 60_000);
  afterAll(async () => {
    raw?.disconnect();
    await frontend?.stop();
    await redis?.close();
  });

  it('closes the queue connections it opened when a later step fails', async () => {
    // The work folder is a file: the worker host, opened after the queue, cannot claim it.
    const workDir = join(home, 'not-a-folder');
    writeFileSync(workDir, '');
    const config = parseWorkerConfig(
      ['--frontend', frontend.url, '--queue', redis.url, '--work-dir', workDir, '--log-level', 'silent'],
      {},
    );
    await expect(startWorkerProcess(config, { announce: false })).rejects.toThrow(/not-a-folder/);
    // CLIENT LIST shows a connection until the server has seen it close: wait for that, bounded.
    let open = await larderClients(raw);
    for (let i = 0; i < 50 && open.length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      open = await larderClients(raw);
    }
    expect(open).toEqual([]);
  }, 60_000);
});
