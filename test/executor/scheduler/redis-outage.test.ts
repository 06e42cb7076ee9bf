import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { workerPlatform } from '../../../executor/reapi/platform.ts';
import { FleetConnection } from '../../../executor/scheduler/redis/fleet-connection.ts';
import { RedisScheduler } from '../../../executor/scheduler/redis/redis-scheduler.ts';
import type { Logger } from '../../../shared/log.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { job, OPERATOR, ok } from './fixtures.ts';

const AMD64 = workerPlatform(new Map([['Arch', ['amd64']]]), ['local']);

/** A logger that lets a test wait for the n-th warning with a given message. */
function watchedLog() {
  const counts = new Map<string, number>();
  const waiters: Array<() => void> = [];
  const log: Logger = {
    debug() {},
    info() {},
    error() {},
    warn(message) {
      counts.set(message, (counts.get(message) ?? 0) + 1);
      for (const wake of waiters.splice(0)) wake();
    },
  };
  const warned = async (message: string, times: number, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while ((counts.get(message) ?? 0) < times) {
      if (Date.now() > deadline) throw new Error(`"${message}" logged ${counts.get(message) ?? 0} times, not ${times}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 500).unref();
      });
    }
  };
  return { log, warned, counts };
}

describe.runIf(haveRedis())('the Redis fleet across a Redis outage', () => {
  let redis: TestRedis;
  const open: RedisScheduler[] = [];
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);

  beforeEach(async () => {
    redis = await startRedis();
    process.on('warning', onWarning);
  }, 30_000);
  afterEach(async () => {
    process.off('warning', onWarning);
    await Promise.all(open.splice(0).map((s) => s.close()));
    await redis?.close();
  });

  const scheduler = async (log: Logger, options: { leaseMs?: number } = {}) => {
    const s = new RedisScheduler(
      await FleetConnection.open({ url: redis.url, log, shutdownGraceMs: 1_000, wakeTimeoutMs: 1_000, ...options }),
    );
    open.push(s);
    return s;
  };

  it('a process holding more than ten leases through a Redis outage draws no MaxListenersExceededWarning', async () => {
    const { log, warned } = watchedLog();
    const front = await scheduler(watchedLog().log);
    const workers = await scheduler(log, { leaseMs: 3_000 });
    const slot = await workers.join({ name: 'host/amd64/1', platform: AMD64 });
    const stopping = new AbortController();
    const names = [];
    for (let i = 0; i < 12; i++) names.push((await front.submit(job(`held ${i}`), null, 'alice')).name);
    const leases = [];
    for (let i = 0; i < 12; i++) leases.push(await slot.take(stopping.signal));
    // Renewals fail while Redis is away, as in a failover; the leases stay held.
    await redis.restart(() => warned('could not renew a lease', 1, 30_000));
    await Promise.all(leases.map((lease) => lease.complete(ok(0))));
    for (const name of names) expect((await front.get(name, OPERATOR))?.done).toBe(true);
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
    stopping.abort();
  }, 60_000);

  it('a worker slot whose connections ioredis gave up on takes work again once Redis is back', async () => {
    const { log, warned } = watchedLog();
    const front = await scheduler(watchedLog().log);
    const fleet = await FleetConnection.open({ url: redis.url, log, shutdownGraceMs: 1_000, wakeTimeoutMs: 1_000 });
    const connect = fleet.connect.bind(fleet);
    let blockingOpened!: (redis: Redis) => void;
    const blocking = new Promise<Redis>((resolve) => (blockingOpened = resolve));
    fleet.connect = (role, options) => {
      const made = connect(role, options);
      if (role === 'blocking') blockingOpened(made);
      return made;
    };
    const workers = new RedisScheduler(fleet);
    open.push(workers);
    const slot = await workers.join({ name: 'host/amd64/1', platform: AMD64 });
    const stopping = new AbortController();
    const taken = slot.take(stopping.signal);
    const connections = [fleet.redis, await blocking];
    await redis.restart(async () => {
      // ioredis ends a connection for good when a reconnection is asked for (a fatal reply, READONLY) while
      // one is under way: its connector then fails with "Connection is closed.". That, for both connections.
      await Promise.all(
        connections.map(
          (connection) =>
            new Promise<void>((resolve) => {
              connection.once('connecting', () => connection.disconnect(true));
              connection.once('end', () => resolve());
            }),
        ),
      );
    });
    const op = await front.submit(job('after'), null, 'alice');
    const lease = await Promise.race([
      taken,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000).unref()),
    ]);
    expect(lease?.job.operation).toBe(op.name);
    await warned('redis connection ended on its own; opening it again', 2, 1_000);
    await lease!.complete(ok(0));
    expect((await front.get(op.name, OPERATOR))?.done).toBe(true);
    stopping.abort();
  }, 90_000);
});
