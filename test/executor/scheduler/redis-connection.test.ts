// How the fleet reaches a locked Redis, against real redis-servers: one with a password (requirepass), one with an
// ACL user and the default user off, one serving only TLS with a certificate from a private CA. The password comes
// from a file, never the command line; a wrong or missing setting fails at open with a message saying which.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionOptions } from '../../../executor/scheduler/redis/connection.ts';
import { RedisScheduler, type RedisSchedulerOptions } from '../../../executor/scheduler/redis/redis-scheduler.ts';
import { isLarderError } from '../../../shared/errors.ts';
import { createLogger } from '../../../shared/log.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { makeCa, OPENSSL, type TestCa } from '../../helpers/test-ca.ts';
import { requireTool } from '../../helpers/tools.ts';

/** The ACL the README recommends for larder's user: its own keys and channels, nothing that could stop Redis. */
const README_ACL = ['~larder:*', '&larder:*', '+@all', '-@dangerous', '+info'];
const PASSWORD = 'c0rrect-h0rse-battery';
const runs = haveRedis() && requireTool('openssl', OPENSSL, 'apt-get install openssl');

describe.runIf(runs)('the fleet connects to a locked Redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'larder-redis-auth-'));
  const passwordFile = join(dir, 'password');
  const wrongFile = join(dir, 'wrong');
  let ca: TestCa;
  let withPassword: TestRedis;
  let withUser: TestRedis;
  let withTls: TestRedis;

  beforeAll(async () => {
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(wrongFile, 'not-the-password\n', { mode: 0o600 });
    ca = makeCa(dir);
    [withPassword, withUser, withTls] = await Promise.all([
      startRedis({ password: PASSWORD }),
      startRedis({ aclUser: { name: 'larder', password: PASSWORD, rules: README_ACL } }),
      startRedis({ password: PASSWORD, tls: ca }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([withPassword, withUser, withTls].filter(Boolean).map((r) => r.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a scheduler and proves the connection works with a command that needs a logged-in user. */
  const works = async (options: Omit<RedisSchedulerOptions, 'log'>) => {
    const scheduler = await RedisScheduler.open({ log: createLogger('silent'), shutdownGraceMs: 500, ...options });
    try {
      expect(await scheduler.stats()).toMatchObject({ queued: 0 });
    } finally {
      await scheduler.close();
    }
  };

  /** The error opening a scheduler with these options fails with: its code and message. */
  const failure = async (options: Omit<RedisSchedulerOptions, 'log'>) => {
    const error = await RedisScheduler.open({ log: createLogger('silent'), shutdownGraceMs: 500, ...options }).then(
      async (scheduler) => {
        await scheduler.close();
        return null;
      },
      (err: unknown) => err,
    );
    expect(isLarderError(error), String(error)).toBe(true);
    return error as { code: string; message: string };
  };

  it('logs in with the password from --queue-password-file', async () => {
    await works({ url: withPassword.url, passwordFile });
  });

  it('still takes a password in the URL (from LARDER_QUEUE, which only its user can read)', async () => {
    await works({ url: withPassword.url.replace('redis://', `redis://:${PASSWORD}@`) });
  });

  it('without the password, or with a wrong one, fails at open saying so', async () => {
    const none = await failure({ url: withPassword.url });
    expect(none.code).toBe('unavailable');
    expect(none.message).toMatch(/NOAUTH/);
    const wrong = await failure({ url: withPassword.url, passwordFile: wrongFile });
    expect(wrong.message).toMatch(/WRONGPASS|invalid password|invalid username-password/i);
    expect(wrong.message).not.toContain('not-the-password');
  });

  it('refuses a password given twice, a missing password file and an empty one', async () => {
    const twice = await failure({ url: withPassword.url.replace('redis://', 'redis://:x@'), passwordFile });
    expect(twice.code).toBe('invalid_argument');
    expect(twice.message).toContain('give the password once');
    const missing = await failure({ url: withPassword.url, passwordFile: join(dir, 'nope') });
    expect(missing.message).toContain(`--queue-password-file ${join(dir, 'nope')}: ENOENT`);
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    expect((await failure({ url: withPassword.url, passwordFile: empty })).message).toContain('on one line');
  });

  it('logs in as an ACL user named in the URL, the password from the file', async () => {
    await works({ url: withUser.url.replace('redis://', 'redis://larder@'), passwordFile });
    // The default user is off: the password alone is not enough.
    expect((await failure({ url: withUser.url, passwordFile })).code).toBe('unavailable');
  });

  it('speaks TLS to rediss://, checking the server against --queue-ca', async () => {
    expect(withTls.url).toMatch(/^rediss:\/\//);
    await works({ url: withTls.url, passwordFile, caPath: ca.caPath });
  });

  it('refuses a TLS server its CA did not sign, and plain redis:// to a TLS port, at open', async () => {
    const untrusted = await failure({ url: withTls.url, passwordFile });
    expect(untrusted.code).toBe('unavailable');
    expect(untrusted.message).toMatch(/certificate/i);
    const plain = await failure({ url: withTls.url.replace('rediss://', 'redis://'), passwordFile });
    expect(plain.code).toBe('unavailable');
  }, 30_000);

  it('hears a connection socket fail twice (ioredis listens for its first error only; the second would end the process)', async () => {
    // The same as a close() that ends a TLS handshake: the certificate check fails, then an alert the server sent
    // back comes out of the same read. Here, deterministically: an SSL error after the handshake (it leaves the
    // socket open), then a reset.
    const proxy = await startFaultProxy(withTls.port);
    const uncaught: unknown[] = [];
    const record = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', record);
    const options = await connectionOptions({ url: proxy.url, passwordFile, caPath: ca.caPath });
    const redis = new Redis({ ...options, retryStrategy: () => null });
    const errors: string[] = [];
    redis.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    try {
      expect(await redis.ping()).toBe('PONG');
      const first = once(redis, 'error');
      proxy.sendToClients('not a TLS record\r\n');
      await first;
      // Not events.once, which rejects at the 'error' this test expects.
      const ended = new Promise((resolve) => redis.once('end', resolve));
      proxy.resetClients();
      await ended;
    } finally {
      redis.disconnect();
      process.off('uncaughtException', record);
      await proxy.close();
    }
    expect(uncaught).toEqual([]);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^ERR_SSL_/);
    expect(errors[1]).toBe('ECONNRESET');
  });

  it('refuses --queue-ca without rediss://, and URLs it would misread', async () => {
    expect((await failure({ url: withPassword.url, caPath: ca.caPath })).message).toContain('use rediss://');
    expect((await failure({ url: `${withPassword.url}?password=x` })).message).toContain('not read');
    expect((await failure({ url: `${withPassword.url}/zero` })).message).toContain('database number');
  });
});

/** A relay to a local port whose client side the test can write into and reset, to fail a connection at will. */
async function startFaultProxy(targetPort: number) {
  const clients = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    clients.add(client);
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => {
      clients.delete(client);
      upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `rediss://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Bytes no TLS server would send, as if from the server. */
    sendToClients: (bytes: string) => {
      for (const client of clients) client.write(bytes);
    },
    /** A TCP reset (RST), which the client reads as ECONNRESET. */
    resetClients: () => {
      for (const client of clients) client.resetAndDestroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of clients) client.destroy();
        server.close(() => resolve());
      }),
  };
}
