// The Redis scheduler against a real redis-server: several RedisScheduler instances stand for frontends and
// worker processes sharing one Redis. Worker death is a dropped connection (no renewals) or a lease expired
// by hand in Redis; the fleet suite kills real processes.
import { create, toBinary } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { splitPlatform, workerPlatform } from '../../../executor/reapi/platform.ts';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { RedisScheduler, type RedisSchedulerOptions } from '../../../executor/scheduler/redis/redis-scheduler.ts';
import type { Caller, ExecutionJob, Lease, OperationState, Scheduler } from '../../../executor/scheduler/scheduler.ts';
import { createLogger } from '../../../shared/log.ts';
import {
  ActionSchema,
  CommandSchema,
  ExecuteResponseSchema,
  PlatformSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { workerSpec } from '../../../executor/scheduler/redis/codec.ts';
import { FleetConnection } from '../../../executor/scheduler/redis/fleet-connection.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { digestOf } from '../helpers.ts';

const AMD64 = workerPlatform(new Map([['Arch', ['amd64']]]), ['local']);
const ARM64 = workerPlatform(new Map([['Arch', ['arm64']]]), ['local']);

/** A job as a frontend makes one: an Action and Command whose bytes hash to the digests they are named by. */
function job(id: string, arch = 'amd64', priority = 0): Omit<ExecutionJob, 'operation'> {
  const platform = create(PlatformSchema, { properties: [{ name: 'Arch', value: arch }] });
  const command = create(CommandSchema, { arguments: ['true', id] });
  const commandBytes = toBinary(CommandSchema, command);
  const action = create(ActionSchema, {
    commandDigest: digestOf(commandBytes),
    inputRootDigest: digestOf(''),
    platform,
  });
  const actionBytes = toBinary(ActionSchema, action);
  const actionDigest = digestOf(actionBytes);
  return {
    instance: '',
    actionDigest: { hash: actionDigest.hash, sizeBytes: Number(actionDigest.sizeBytes) },
    action,
    command,
    encoded: { action: actionBytes, command: commandBytes },
    platform: splitPlatform(platform, undefined),
    timeoutMs: 60_000,
    priority,
    queuedAt: new Date(),
  };
}

const ALICE: Caller = { id: 'basic:alice', operator: false };
const BOB: Caller = { id: 'basic:bob', operator: false };
const MALLORY: Caller = { id: 'basic:mallory', operator: false };
const OPERATOR: Caller = { id: 'basic:carol', operator: true };

const ok = (exitCode: number) => create(ExecuteResponseSchema, { status: { code: 0 }, result: { exitCode } });

const aborted = (signal: AbortSignal) =>
  signal.aborted
    ? Promise.resolve()
    : new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));

/** Resolves with the state once `scheduler` reports the operation done (by subscription, not polling). */
async function whenDone(scheduler: Scheduler, name: string): Promise<OperationState> {
  let wake = () => {};
  const unsubscribe = await scheduler.subscribe(name, () => wake());
  try {
    for (;;) {
      const changed = new Promise<void>((resolve) => (wake = resolve));
      const state = await scheduler.get(name, OPERATOR);
      if (state?.done) return state;
      await changed;
    }
  } finally {
    unsubscribe?.();
  }
}

describe.runIf(haveRedis())('RedisScheduler on a real Redis', () => {
  let redis: TestRedis;
  let raw: Redis;
  const open: RedisScheduler[] = [];
  let prefixCount = 0;
  let prefix = '';

  /** A scheduler and the fleet connection it runs on (which a test may cut, as a worker process's death does). */
  const schedulerAndFleet = async (options: Partial<RedisSchedulerOptions> = {}) => {
    const fleet = await FleetConnection.open({
      url: redis.url,
      log: createLogger('silent'),
      prefix,
      shutdownGraceMs: 1_000,
      ...options,
    });
    const s = new RedisScheduler(fleet);
    open.push(s);
    return { scheduler: s, fleet };
  };
  const scheduler = async (options: Partial<RedisSchedulerOptions> = {}) =>
    (await schedulerAndFleet(options)).scheduler;

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
  }, 30_000);
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    prefix = `t${++prefixCount}:`;
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.close();
  });
  prefix = `t0:`;

  it('merges identical actions submitted through two frontends into one run, and both follow it', async () => {
    const [frontA, frontB, workers] = [await scheduler(), await scheduler(), await scheduler()];
    const slot = await workers.join({ name: 'w', platform: AMD64 });
    const a = await frontA.submit(job('1'), 'key-1', ALICE.id);
    const b = await frontB.submit(job('1'), 'key-1', ALICE.id);
    expect(b.name).toBe(a.name);
    const doneOnB = whenDone(frontB, a.name);
    const lease = await slot.take(new AbortController().signal);
    expect(lease.job.operation).toBe(a.name);
    await lease.executing();
    expect((await frontA.get(a.name, ALICE))?.stage).toBe(3);
    await lease.complete(ok(7));
    expect((await doneOnB).response?.result?.exitCode).toBe(7);
    expect(await frontA.stats()).toMatchObject({ submitted: 1, merged: 1, completed: 1, queued: 0, running: 0 });
    // Finished: the next identical submission is a new operation.
    expect((await frontB.submit(job('1'), 'key-1', ALICE.id)).name).not.toBe(a.name);
    await slot.leave();
  });

  it("reports each platform queue's oldest wait whatever the priorities, and the live workers' reports", async () => {
    const [front, workers] = [await scheduler(), await scheduler()];
    const report = { running: 1, slots: 3, done: 5, failed: 1 };
    await workers.join({ name: 'host/amd64/1', platform: AMD64, report: () => report });
    await workers.join({ name: 'host/arm64/2', platform: ARM64 });
    const old = await front.submit(job('old', 'amd64', 5), null, ALICE.id);
    await front.submit(job('urgent', 'amd64', -5), null, ALICE.id);
    // The least urgent job has waited a minute (as if queued then): the queue's head is the other one.
    await raw.hset(`${prefix}op:${old.name}`, 'at', Number(await raw.hget(`${prefix}op:${old.name}`, 'at')) - 60_000);
    const stats = await front.stats();
    expect(stats.queued).toBe(2);
    expect(stats.queues).toHaveLength(1);
    expect(stats.queues[0]).toMatchObject({ platform: 'Arch=amd64', queued: 2 });
    expect(stats.queues[0]!.oldestQueuedSeconds).toBeGreaterThanOrEqual(60);
    expect(stats.workers.map(({ lastSeen: _, ...w }) => w)).toEqual([
      { name: 'host/amd64/1', platform: 'Arch=amd64, OSFamily=linux', ...report },
      { name: 'host/arm64/2', platform: 'Arch=arm64, OSFamily=linux', running: 0, slots: 0, done: 0, failed: 0 },
    ]);
  });

  it('fails fast without a live worker for the platform, naming what is missing', async () => {
    const front = await scheduler({ heartbeatMs: 60_000 });
    await expect(front.submit(job('2'), null, ALICE.id)).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringContaining('no worker'),
    });
    const slot = await (await scheduler()).join({ name: 'amd', platform: AMD64 });
    await expect(front.submit(job('2', 'arm64'), null, ALICE.id)).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringContaining('Arch=arm64'),
    });
    await front.submit(job('2'), null, ALICE.id);
    await slot.leave();
    await expect(front.submit(job('3'), null, ALICE.id)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
  });

  it('a worker blocked in take wakes for a job submitted elsewhere, and only for its platform', async () => {
    const front = await scheduler();
    // Far longer than the test: only a wake marker can end these waits.
    const workers = await scheduler({ wakeTimeoutMs: 120_000 });
    const amd = await workers.join({ name: 'amd', platform: AMD64 });
    const arm = await workers.join({ name: 'arm', platform: ARM64 });
    const stop = new AbortController();
    const armTake = arm.take(stop.signal);
    const amdTake = amd.take(stop.signal);
    await front.submit(job('4', 'arm64'), null, ALICE.id);
    const lease = await armTake;
    expect(lease.job.command.arguments).toEqual(['true', '4']);
    await lease.complete(ok(0));
    const next = await front.submit(job('5', 'amd64'), null, ALICE.id);
    expect((await amdTake).job.operation).toBe(next.name);
    stop.abort(new Error('done'));
    await expect(arm.take(stop.signal)).rejects.toThrow('done');
  });

  it('takes the most urgent job first across the platform queues a worker satisfies', async () => {
    const front = await scheduler();
    const slot = await (await scheduler()).join({
      name: 'any',
      platform: workerPlatform(
        new Map([
          ['Arch', ['amd64']],
          ['Pool', ['big']],
        ]),
        ['local'],
      ),
    });
    const low = await front.submit(job('6', 'amd64', 5), null, ALICE.id);
    const urgentJob = {
      ...job('7', 'amd64', -5),
      platform: splitPlatform(create(PlatformSchema, { properties: [{ name: 'Pool', value: 'big' }] }), undefined),
    };
    const urgent = await front.submit(urgentJob, null, ALICE.id);
    const signal = new AbortController().signal;
    expect((await slot.take(signal)).job.operation).toBe(urgent.name);
    expect((await slot.take(signal)).job.operation).toBe(low.name);
  });

  it('requeues the job of a worker that stopped renewing its lease; another worker completes it once', async () => {
    const front = await scheduler({ leaseMs: 600 });
    const dying = await schedulerAndFleet({ leaseMs: 600 });
    const dyingSlot = await dying.scheduler.join({ name: 'dying', platform: AMD64 });
    const op = await front.submit(job('8'), 'key-8', ALICE.id);
    const first = await dyingSlot.take(new AbortController().signal);
    expect(first.job.operation).toBe(op.name);
    // The worker's process is gone: no more renewals, no heartbeat.
    dying.fleet.redis.disconnect(false);
    const survivor = await (await scheduler({ leaseMs: 600 })).join({ name: 'survivor', platform: AMD64 });
    const second = await survivor.take(new AbortController().signal);
    expect(second.job.operation).toBe(op.name);
    expect(await raw.hget(`${prefix}op:${op.name}`, 'attempts')).toBe('2');
    await second.complete(ok(3));
    expect((await whenDone(front, op.name)).response?.result?.exitCode).toBe(3);
    expect((await front.stats()).completed).toBe(1);
  });

  it('records only the current holder’s result: a worker whose lease was taken away is told, and its result dropped', async () => {
    const front = await scheduler({ leaseMs: 900 });
    const w1 = await (await scheduler({ leaseMs: 900 })).join({ name: 'w1', platform: AMD64 });
    const op = await front.submit(job('9'), null, ALICE.id);
    const lease1 = await w1.take(new AbortController().signal);
    // As if w1 had been silent past its lease: the sweep hands the job to w2.
    await raw.zadd(`${prefix}leases`, 0, op.name);
    const w2 = await (await scheduler({ leaseMs: 900 })).join({ name: 'w2', platform: AMD64 });
    const lease2 = await w2.take(new AbortController().signal);
    expect(lease2.job.operation).toBe(op.name);
    await aborted(lease1.signal);
    expect(String(lease1.signal.reason)).toContain('lost its lease');
    await lease1.complete(ok(1));
    expect((await front.get(op.name, ALICE))?.done).toBe(false);
    await lease2.complete(ok(2));
    expect((await front.get(op.name, ALICE))?.response?.result?.exitCode).toBe(2);
  });

  it('fails an action with a clear message after maxAttempts deliveries instead of bouncing forever', async () => {
    const front = await scheduler({ leaseMs: 500, maxAttempts: 2 });
    let op: OperationState | null = null;
    for (let i = 0; i < 2; i++) {
      const doomed = await schedulerAndFleet({ leaseMs: 500, maxAttempts: 2 });
      const slot = await doomed.scheduler.join({ name: `doomed-${i}`, platform: AMD64 });
      op ??= await front.submit(job('10'), null, ALICE.id);
      const lease = await slot.take(new AbortController().signal);
      expect(lease.job.operation).toBe(op!.name);
      doomed.fleet.redis.disconnect(false);
    }
    const state = await whenDone(front, op!.name);
    expect(state.response?.status?.code).toBe(Code.UNAVAILABLE);
    expect(state.response?.status?.message).toMatch(/given to 2 workers in turn .* gave up/);
  });

  it('cancels a queued operation at once, and a running one through its holder', async () => {
    const front = await scheduler();
    const slot = await (await scheduler()).join({ name: 'w', platform: AMD64 });
    const queued = await front.submit(job('11'), null, ALICE.id);
    const running = await front.submit(job('12'), null, ALICE.id);
    const lease: Lease = await slot.take(new AbortController().signal);
    expect(lease.job.operation).toBe(queued.name);
    expect(await front.cancel(running.name, ALICE)).toBe(true);
    expect((await front.get(running.name, OPERATOR))?.response?.status?.code).toBe(Code.CANCELLED);
    expect(await front.cancel(queued.name, ALICE)).toBe(true);
    await aborted(lease.signal);
    await lease.complete(create(ExecuteResponseSchema, { status: { code: Code.CANCELLED, message: 'stopped' } }));
    expect((await front.get(queued.name, OPERATOR))?.response?.status?.message).toBe('stopped');
    expect(await front.cancel('operations/unknown', ALICE)).toBe(false);
    expect(await front.get('operations/unknown', ALICE)).toBeNull();
  });

  it('finished operations expire after retainMs; the job itself is dropped at once', async () => {
    const front = await scheduler({ retainMs: 5_000 });
    const slot = await (await scheduler({ retainMs: 5_000 })).join({ name: 'w', platform: AMD64 });
    const op = await front.submit(job('13'), 'key-13', ALICE.id);
    const lease = await slot.take(new AbortController().signal);
    const ttlInFlight = await raw.pttl(`${prefix}op:${op.name}`);
    expect(ttlInFlight).toBeGreaterThan(5_000);
    await lease.complete(ok(0));
    const ttl = await raw.pttl(`${prefix}op:${op.name}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5_000);
    expect(await raw.hexists(`${prefix}op:${op.name}`, 'job')).toBe(0);
    expect(await raw.exists(`${prefix}merge:key-13`)).toBe(0);
  });

  it('gives every joined worker its own identity, even under one name', async () => {
    const workers = await scheduler();
    await workers.join({ name: 'same-host/0', platform: AMD64 });
    await workers.join({ name: 'same-host/0', platform: AMD64 });
    const ids = await raw.hkeys(`${prefix}workers`);
    expect(ids).toHaveLength(2);
    expect(new Set(ids).size).toBe(2);
  });

  it('a closing worker hands its running job back to the queue, for another worker at once', async () => {
    const front = await scheduler();
    const leaving = await scheduler();
    const leavingSlot = await leaving.join({ name: 'leaving', platform: AMD64 });
    const op = await front.submit(job('14'), null, ALICE.id);
    const lease = await leavingSlot.take(new AbortController().signal);
    const closed = leaving.close();
    await aborted(lease.signal);
    await lease.complete(create(ExecuteResponseSchema, { status: { code: Code.UNAVAILABLE, message: 'stopped' } }));
    await closed;
    const other = await (await scheduler()).join({ name: 'other', platform: AMD64 });
    const again = await other.take(new AbortController().signal);
    expect(again.job.operation).toBe(op.name);
    expect(await raw.hget(`${prefix}op:${op.name}`, 'attempts')).toBe('1');
  });

  it('an operation is seen only by its waiters and operators, on every frontend; a cancel detaches its caller', async () => {
    const [frontA, frontB] = [await scheduler(), await scheduler()];
    const slot = await (await scheduler()).join({ name: 'w', platform: AMD64 });
    const op = await frontA.submit(job('15'), 'key-15', ALICE.id);
    expect((await frontB.submit(job('15'), 'key-15', BOB.id)).name).toBe(op.name);
    const lease = await slot.take(new AbortController().signal);
    for (const front of [frontA, frontB]) {
      expect(await front.get(op.name, MALLORY)).toBeNull();
      expect(await front.cancel(op.name, MALLORY)).toBe(false);
      expect((await front.get(op.name, OPERATOR))?.name).toBe(op.name);
    }
    // Bob's cancel ends his wait only: his followers are told, Alice's run goes on.
    let told = () => {};
    const bobTold = new Promise<void>((resolve) => (told = resolve));
    await frontB.subscribe(op.name, () => told());
    expect(await frontB.cancel(op.name, BOB)).toBe(true);
    await bobTold;
    expect(await frontA.get(op.name, BOB)).toMatchObject({
      done: true,
      response: { status: { code: Code.CANCELLED } },
    });
    expect((await frontB.get(op.name, ALICE))?.done).toBe(false);
    expect(await frontB.cancel(op.name, BOB)).toBe(true);
    // Alice was the last waiter: her cancel reaches the holder, and nobody joins the stopping run.
    expect(await frontA.cancel(op.name, ALICE)).toBe(true);
    await aborted(lease.signal);
    expect((await frontB.submit(job('15'), 'key-15', BOB.id)).name).not.toBe(op.name);
    await lease.complete(create(ExecuteResponseSchema, { status: { code: Code.CANCELLED, message: 'stopped' } }));
    expect((await frontA.get(op.name, OPERATOR))?.response?.status?.message).toBe('stopped');
  });

  it("an operator's cancel of an operation it does not wait on stops it for every waiter", async () => {
    const front = await scheduler();
    await (await scheduler()).join({ name: 'arm', platform: ARM64 });
    const op = await front.submit(job('16', 'arm64'), 'key-16', ALICE.id);
    await front.submit(job('16', 'arm64'), 'key-16', BOB.id);
    expect(await front.cancel(op.name, OPERATOR)).toBe(true);
    for (const caller of [ALICE, BOB, OPERATOR])
      expect((await front.get(op.name, caller))?.response?.status?.code).toBe(Code.CANCELLED);
  });

  it('a queued action whose only matching worker is gone fails with UNAVAILABLE after a grace period', async () => {
    const timing = { leaseMs: 300, heartbeatMs: 600, strandedGraceMs: 300 };
    const front = await scheduler(timing);
    const leaving = await (await scheduler(timing)).join({ name: 'arm', platform: ARM64 });
    const op = await front.submit(job('17', 'arm64'), null, ALICE.id);
    const started = Date.now();
    await leaving.leave();
    const state = await whenDone(front, op.name);
    expect(state.response?.status?.code).toBe(Code.UNAVAILABLE);
    expect(state.response?.status?.message).toContain('no live worker can run this action');
    // Grace plus two sweeps at most.
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a heartbeat no real worker stands behind keeps no action waiting: sent once, or forged into the future', async () => {
    const timing = { leaseMs: 300, heartbeatMs: 600, strandedGraceMs: 300 };
    const { scheduler: front, fleet } = await schedulerAndFleet(timing);
    const spec = workerSpec(ARM64);
    // Forged by hand with an expiry a year away, as a Redis client could: not believed.
    const farAway = Date.now() + 365 * 24 * 3600_000;
    await raw.hset(`${prefix}workers`, 'forged', JSON.stringify({ s: spec.spec, w: spec.key, e: farAway, t: farAway }));
    await expect(front.submit(job('18', 'arm64'), null, ALICE.id)).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
    });
    // One heartbeat through the script, as a worker's first, and then silence: the action fails, it does not wait.
    await fleet.script('heartbeat', 'once', spec.spec, spec.key);
    const op = await front.submit(job('18', 'arm64'), null, ALICE.id);
    const state = await whenDone(front, op.name);
    expect(state.response?.status?.code).toBe(Code.UNAVAILABLE);
  });

  it('a queued job rewritten in Redis is refused by the worker that claims it, which goes on to the next', async () => {
    const [front, workers] = [await scheduler(), await scheduler()];
    const slot = await workers.join({ name: 'w', platform: AMD64 });
    const victim = await front.submit(job('19'), 'key-19', ALICE.id);
    const honest = await front.submit(job('20'), null, ALICE.id);
    // Another queued job's Command put under the victim's digest, as anyone who can write to Redis could.
    const key = `${prefix}op:${victim.name}`;
    const stored = JSON.parse((await raw.hget(key, 'job'))!) as { command: string };
    stored.command = Buffer.from(job('20').encoded.command).toString('base64');
    await raw.hset(key, 'job', JSON.stringify(stored));

    const lease = await slot.take(new AbortController().signal);
    expect(lease.job.operation).toBe(honest.name);
    const refused = await whenDone(front, victim.name);
    expect(refused.response?.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(refused.response?.status?.message).toMatch(/Command .* does not hash to the Action's command_digest/);
    expect(refused.response?.result).toBeUndefined();
    await lease.complete(ok(0));
    await slot.leave();
  });

  it('a job from a frontend that re-encoded nothing: the exact bytes it read reach the worker', async () => {
    // Bytes no encoder would write (field 15, commandDigest, after field 2): a valid Action, hashed as sent.
    const genuine = job('21');
    const reordered = Buffer.concat([
      toBinary(ActionSchema, create(ActionSchema, { inputRootDigest: genuine.action.inputRootDigest })),
      toBinary(ActionSchema, create(ActionSchema, { commandDigest: genuine.action.commandDigest })),
      toBinary(ActionSchema, create(ActionSchema, { platform: genuine.action.platform })),
    ]);
    expect(reordered.equals(Buffer.from(genuine.encoded.action))).toBe(false);
    const digest = digestOf(reordered);
    const front = await scheduler();
    const slot = await (await scheduler()).join({ name: 'w', platform: AMD64 });
    await front.submit(
      {
        ...genuine,
        actionDigest: { hash: digest.hash, sizeBytes: reordered.byteLength },
        encoded: { ...genuine.encoded, action: reordered },
      },
      null,
      ALICE.id,
    );
    const lease = await slot.take(new AbortController().signal);
    expect(lease.job.actionDigest.hash).toBe(digest.hash);
    expect(lease.job.command.arguments).toEqual(['true', '21']);
    expect(lease.job.platform.constraints.get('Arch')).toEqual(['amd64']);
    await lease.complete(ok(0));
    await slot.leave();
  });
});
