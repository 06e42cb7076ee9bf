/**
 * A real redis-server (Debian's) for one test file: its own port and data folder, stopped by PID. It can be
 * stopped and started again on the same port and data (append-only file on), as a Redis restart. Optionally
 * locked as a fleet's Redis should be: a password (requirepass), an ACL user instead of the default one, TLS.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool, requireTool } from './tools.ts';
import { freeLoopbackPort } from './ports.ts';

export const REDIS_SERVER = findTool('/usr/bin/redis-server', 'redis-server');

/** Whether the Redis suites run (in CI a missing redis-server fails them). */
export function haveRedis(): boolean {
  return requireTool('redis-server', REDIS_SERVER, 'apt-get install redis-server');
}

export interface TestRedisOptions {
  /** Clients must AUTH with this password (the default user's, `requirepass`). */
  password?: string;
  /** The default user is off; this user may do what `rules` say (default: everything), after AUTH NAME PASSWORD. */
  aclUser?: { name: string; password: string; rules?: string[] };
  /** Serve TLS only (no plain port) with this certificate; the url is then rediss://, without client certificates. */
  tls?: { certPath: string; keyPath: string; caPath: string };
  /** More redis-server arguments (`--replicaof HOST PORT`). */
  args?: string[];
}

export interface TestRedis {
  /** redis:// or rediss://127.0.0.1:PORT, without credentials. */
  url: string;
  port: number;
  pid(): number;
  stop(): Promise<void>;
  /** Stops the server (SIGTERM: it writes its append-only file) and starts it again on the same port and data. */
  restart(between?: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export async function startRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'larder-redis-'));
  const port = await freeLoopbackPort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    const proc = spawn(
      REDIS_SERVER!,
      [
        ...listenArgs(port, options),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--daemonize',
        'no',
        '--protected-mode',
        'no',
        '--loglevel',
        'notice',
        ...(options.args ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    let output = '';
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        process.kill(proc.pid!, 'SIGKILL');
        reject(new Error(`redis-server did not start in 20 s:\n${output}`));
      }, 20_000);
      const onData = (d: Buffer) => {
        output += d.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${output}`));
      });
    });
  };

  const stop = async () => {
    const proc = child;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    process.kill(proc.pid!, 'SIGTERM');
    const timer = setTimeout(() => process.kill(proc.pid!, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  await start();
  return {
    url: `${options.tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${port}`,
    port,
    pid: () => child!.pid!,
    stop,
    async restart(between) {
      await stop();
      await between?.();
      await start();
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function listenArgs(port: number, options: TestRedisOptions): string[] {
  const args = options.password === undefined ? [] : ['--requirepass', options.password];
  if (options.aclUser !== undefined) {
    const { name, password, rules = ['~*', '&*', '+@all'] } = options.aclUser;
    args.push('--user', 'default', 'off', '--user', name, 'on', `>${password}`, ...rules);
  }
  if (options.tls === undefined) return [...args, '--port', String(port)];
  const { certPath, keyPath, caPath } = options.tls;
  return [
    ...args,
    '--port',
    '0',
    '--tls-port',
    String(port),
    '--tls-cert-file',
    certPath,
    '--tls-key-file',
    keyPath,
    '--tls-ca-cert-file',
    caPath,
    '--tls-auth-clients',
    'no',
  ];
}
