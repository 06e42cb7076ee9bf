/**
 * A Sentinel-managed Redis for one test file (Debian's redis-server and redis-sentinel): a primary, a replica
 * of it, and three Sentinels (quorum 2) watching them under the name `larder`, all on loopback, each stopped by
 * PID. Sentinels call a primary down after 1 s without an answer, so a killed primary fails over in seconds.
 * Returned only once the replica is in sync and every Sentinel knows the replica and the two other Sentinels:
 * before that, a failover could not happen.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freeLoopbackPort } from './ports.ts';
import { startRedis, type TestRedis } from './redis.ts';
import { findTool, requireTool } from './tools.ts';

export const REDIS_SENTINEL = findTool('/usr/bin/redis-sentinel', 'redis-sentinel');
export const MASTER_NAME = 'larder';

export function haveRedisSentinel(): boolean {
  return requireTool('redis-sentinel', REDIS_SENTINEL, 'apt-get install redis-sentinel');
}

export interface TestSentinels {
  /** `redis+sentinel://127.0.0.1:P1,…/larder`: what `--queue` takes. */
  url: string;
  primary: TestRedis;
  replica: TestRedis;
  sentinelPorts: number[];
  /** The primary as the Sentinels name it now: `127.0.0.1:PORT`. */
  currentPrimary(): Promise<string>;
  close(): Promise<void>;
}

export async function startSentinels(): Promise<TestSentinels> {
  const primary = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
  const sentinels: Array<{ port: number; child: ChildProcess; dir: string }> = [];
  const close = async () => {
    await Promise.all(sentinels.map((s) => stopChild(s.child)));
    for (const s of sentinels) rmSync(s.dir, { recursive: true, force: true });
    await Promise.all([replica.close(), primary.close()]);
  };
  try {
    await untilTrue('the replica to sync', () =>
      info(replica.port, 'replication').then((text) => text.includes('master_link_status:up')),
    );
    for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(primary.port));
    await untilTrue('every Sentinel to know the replica and the other two', async () => {
      for (const s of sentinels) {
        const client = new Redis({ port: s.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          const master = fields((await client.call('SENTINEL', 'MASTER', MASTER_NAME)) as string[]);
          if (master['num-slaves'] !== '1' || master['num-other-sentinels'] !== '2') return false;
        } finally {
          client.disconnect();
        }
      }
      return true;
    });
  } catch (err) {
    await close();
    throw err;
  }
  const sentinelPorts = sentinels.map((s) => s.port);
  return {
    url: `redis+sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${MASTER_NAME}`,
    primary,
    replica,
    sentinelPorts,
    async currentPrimary() {
      const client = new Redis({ port: sentinelPorts[0]!, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      try {
        const [host, port] = (await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as string[];
        return `${host}:${port}`;
      } finally {
        client.disconnect();
      }
    },
    close,
  };
}

async function startSentinel(primaryPort: number): Promise<{ port: number; child: ChildProcess; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'larder-sentinel-'));
  const port = await freeLoopbackPort();
  // A Sentinel rewrites its configuration file as it learns: it must be its own and writable.
  const config = join(dir, 'sentinel.conf');
  writeFileSync(
    config,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode no',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primaryPort} 2`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 10000`,
      `sentinel parallel-syncs ${MASTER_NAME} 1`,
      '',
    ].join('\n'),
  );
  const child = spawn(REDIS_SENTINEL!, [config, '--daemonize', 'no', '--loglevel', 'notice'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(child.pid!, 'SIGKILL');
      reject(new Error(`redis-sentinel did not start in 20 s:\n${output}`));
    }, 20_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('+monitor master')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-sentinel exited with ${code}:\n${output}`));
    });
  });
  return { port, child, dir };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function info(port: number, section: string): Promise<string> {
  const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  try {
    return await client.info(section);
  } finally {
    client.disconnect();
  }
}

/** A flat [key, value, key, value…] reply as an object. */
function fields(reply: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < reply.length; i += 2) out[reply[i]!] = reply[i + 1]!;
  return out;
}

/** Asks `check` every 100 ms until it says true, for at most 30 s (300 times). */
async function untilTrue(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what} (30 s)`);
}
