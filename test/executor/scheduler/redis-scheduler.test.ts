// What only the Redis scheduler does, against a real redis-server: several RedisScheduler instances stand for
// frontends and worker processes sharing one Redis. What every scheduler promises is in contract.test.ts (run
// against this one too); here: what Redis holds, worker identities, hand-back on close, stranded and forged
// entries, reservations for warm workers. Worker death is a dropped connection; the fleet suite kills processes.
import { create, toBinary } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { workerPlatform } from '../../../executor/reapi/platform.ts';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { RedisScheduler, type RedisSchedulerOptions } from '../../../executor/scheduler/redis/redis-scheduler.ts';
import { createLogger } from '../../../shared/log.ts';
import {
  ActionSchema,
  ExecuteResponseSchema,
  ExecutionStage_Value,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { workerSpec } from '../../../executor/scheduler/redis/codec.ts';
import { FleetConnection } from '../../../executor/scheduler/redis/fleet-connection.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { digestOf } from '../helpers.ts';
import { ALICE, aborted, job as newJob, ok, whenDone } from './fixtures.ts';

const job = (id: string, arch = 'amd64', priority = 0, key?: string) => newJob(id, { arch, priority, key });

const AMD64 = workerPlatform(new Map([['Arch', ['amd64']]]), ['local']);
const ARM64 = workerPlatform(new Map([['Arch', ['arm64']]]), ['local']);

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

  /** HMGET calls Redis has served (INFO commandstats, scripts' own included): how often operation state was read. */
  const hmgetCalls = async () => Number(/cmdstat_hmget:calls=(\d+)/.exec(await raw.info('commandstats'))?.[1] ?? 0);

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

  it('the submitter follows its operation to done from the events alone: no read of its state', async () => {
    const [front, workers] = [await scheduler(), await scheduler()];
    const slot = await workers.join({ name: 'w', platform: AMD64 });
    const taking = slot.take(new AbortController().signal);
    const before = await hmgetCalls();
    const op = await front.submit(job('41'), null, ALICE.id);
    let changed = () => {};
    const unsubscribe = await front.subscribe(op.name, () => changed());
    expect(await front.get(op.name, ALICE)).toMatchObject({ done: false, stage: ExecutionStage_Value.EXECUTING });
    const told = new Promise<void>((resolve) => (changed = resolve));
    await (await taking).complete(ok(7));
    await told;
    expect((await front.get(op.name, ALICE))?.response?.result?.exitCode).toBe(7);
    // The one HMGET is the complete script's own (is the lease still the worker's?).
    expect(await hmgetCalls()).toBe(before + 1);
    // Once unsubscribed, the state is read from Redis, as every other follower's is.
    unsubscribe?.();
    expect((await front.get(op.name, ALICE))?.response?.result?.exitCode).toBe(7);
    expect(await hmgetCalls()).toBe(before + 2);
  });

  it('a worker that finds nothing to claim drops the wake markers of jobs claims took meanwhile: no idle spinning', async () => {
    // A burst queues jobs while every slot is busy (a wake marker each); busy slots then claim them without
    // waiting, so the markers outlive their jobs. The first claim that finds nothing clears them: otherwise each
    // idle slot would pop them one by one, a claim and a blocking read for nothing each.
    const { scheduler: front, fleet } = await schedulerAndFleet();
    const spec = workerSpec(AMD64);
    await fleet.script('heartbeat', 'busy', spec.spec, spec.key);
    for (const id of ['31', '32', '33']) await front.submit(job(id), null, ALICE.id);
    const wake = `${prefix}wake:${spec.key}`;
    expect(await raw.llen(wake)).toBe(3);
    const claim = (token: string) =>
      fleet.script<unknown[] | null>('claim', spec.spec, 'busy', token, 30_000, spec.key);
    for (const token of ['t1', 't2', 't3']) expect(await claim(token)).not.toBeNull();
    expect(await claim('t4')).toBeNull();
    expect(await raw.llen(wake)).toBe(0);
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
  it('a job handed to a waiting worker that died goes to another worker when its lease expires', async () => {
    const timing = { leaseMs: 600 };
    const front = await scheduler(timing);
    const dying = await schedulerAndFleet(timing);
    let warm = false;
    const warmSlot = await dying.scheduler.join({ name: 'warm', platform: AMD64, warmFor: () => warm });
    await front.submit(job('22', 'amd64', 0, 'tool'), null, ALICE.id);
    await (await warmSlot.take(new AbortController().signal)).complete(ok(0));
    warm = true;
    // It waits, registered as waiting and warm for the key; then its process dies (heartbeat still fresh).
    const stop = new AbortController();
    void warmSlot.take(stop.signal).catch(() => {});
    for (let i = 0; i < 100 && (await raw.hlen(`${prefix}idle`)) === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(JSON.parse((await raw.hvals(`${prefix}idle`))[0]!)).toMatchObject({ k: [expect.any(String)] });
    dying.fleet.disconnect(dying.fleet.redis);
    stop.abort(new Error('dead'));
    const cold = await (await scheduler(timing)).join({ name: 'cold', platform: AMD64 });
    const op = await front.submit(job('23', 'amd64', 0, 'tool'), null, ALICE.id);
    expect(await raw.hget(`${prefix}op:${op.name}`, 'worker')).toMatch(/^warm#/);
    const lease = await cold.take(new AbortController().signal);
    expect(lease.job.operation).toBe(op.name);
    expect(await raw.hget(`${prefix}op:${op.name}`, 'attempts')).toBe('2');
    await lease.complete(ok(0));
  });
  it('a job handed to a waiting worker that leaves before reading it goes back to the queue, not counted', async () => {
    const front = await scheduler();
    const leaving = await (await scheduler()).join({ name: 'leaving', platform: AMD64 });
    const stop = new AbortController();
    const abandoned = leaving.take(stop.signal).catch(() => null);
    for (let i = 0; i < 100 && (await raw.hlen(`${prefix}idle`)) === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    // Its take ends, but it is still registered as waiting when the job comes: the job is handed to it.
    stop.abort(new Error('stopping'));
    await abandoned;
    const op = await front.submit(job('24'), null, ALICE.id);
    expect(await raw.hget(`${prefix}op:${op.name}`, 'worker')).toMatch(/^leaving#/);
    await leaving.leave();
    const other = await (await scheduler()).join({ name: 'other', platform: AMD64 });
    const lease = await other.take(new AbortController().signal);
    expect(lease.job.operation).toBe(op.name);
    expect(await raw.hget(`${prefix}op:${op.name}`, 'attempts')).toBe('1');
    await lease.complete(ok(0));
  });

  /** The pub/sub channels of this test's prefix that some connection subscribes, less the worker slots' own. */
  const operationChannels = async () =>
    (await raw.pubsub('CHANNELS', `${prefix}*`)).filter((c) => !(c as string).startsWith(`${prefix}ev:slot:`));

  it('a frontend holds one subscription however many operations its submitters follow, each told of its own', async () => {
    const [front, workers] = [await scheduler(), await scheduler()];
    const slot = await workers.join({ name: 'w', platform: AMD64 });
    const ops = [];
    for (let i = 0; i < 5; i++) ops.push(await front.submit(job(`5${i}`), null, ALICE.id));
    const heard = ops.map(() => 0);
    const onEvent = ops.map(() => () => {});
    const stops = await Promise.all(
      ops.map((op, i) =>
        front.subscribe(op.name, () => {
          heard[i]!++;
          onEvent[i]!();
        }),
      ),
    );
    // One channel for the frontend, subscribed once for its life: no SUBSCRIBE (nor UNSUBSCRIBE) per operation.
    expect(await operationChannels()).toHaveLength(1);
    expect(await raw.pubsub('NUMSUB', ...ops.map((op) => `${prefix}ev:${op.name}`))).toEqual(
      ops.flatMap((op) => [`${prefix}ev:${op.name}`, 0]),
    );
    const lease = await slot.take(new AbortController().signal);
    const finished = ops.findIndex((op) => op.name === lease.job.operation);
    const done = new Promise<void>((resolve) => {
      onEvent[finished] = () => void front.get(lease.job.operation, ALICE).then((state) => state?.done && resolve());
    });
    await lease.complete(ok(3));
    await done;
    expect((await front.get(lease.job.operation, ALICE))?.response?.result?.exitCode).toBe(3);
    // Events went only to their own operations' followers: those still queued heard nothing.
    const stages = await Promise.all(ops.map((op) => raw.hget(`${prefix}op:${op.name}`, 'stage')));
    expect(stages.filter((stage) => stage === String(ExecutionStage_Value.QUEUED))).toHaveLength(4);
    expect(heard.filter((_, i) => stages[i] === String(ExecutionStage_Value.QUEUED))).toEqual([0, 0, 0, 0]);
    for (const stop of stops) stop?.();
    expect(await operationChannels()).toHaveLength(1);
    await slot.leave();
  });

  it('a follower on another frontend (WaitExecution there) hears its operation finish', async () => {
    const [submitting, following, workers] = [await scheduler(), await scheduler(), await scheduler()];
    const slot = await workers.join({ name: 'w', platform: AMD64 });
    const op = await submitting.submit(job('60'), null, ALICE.id);
    let told = () => {};
    const heard = new Promise<void>((resolve) => (told = resolve));
    const stop = await following.subscribe(op.name, () => told());
    expect(stop).not.toBeNull();
    const lease = await slot.take(new AbortController().signal);
    await lease.complete(ok(4));
    await heard;
    expect((await whenDone(following, op.name)).response?.result?.exitCode).toBe(4);
    stop?.();
    await slot.leave();
  });

  /** Scripts Redis has run (EVALSHA and EVAL calls, INFO commandstats). */
  const scriptCalls = async () => {
    const stats = await raw.info('commandstats');
    const calls = (command: string) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    return calls('evalsha') + calls('eval');
  };

  it("a worker's result and its claim of the next queued job are one script: the next take costs no round trip", async () => {
    // Long leases: no sweep runs meanwhile (every third of a lease) to blur the count.
    const timing = { leaseMs: 60_000 };
    const [front, workers] = [await scheduler(timing), await scheduler(timing)];
    const slot = await workers.join({ name: 'w', platform: AMD64 });
    const first = await front.submit(job('70'), null, ALICE.id);
    const lease = await slot.take(new AbortController().signal);
    expect(lease.job.operation).toBe(first.name);
    const second = await front.submit(job('71'), null, ALICE.id);
    const before = await scriptCalls();
    // The worker says its take follows at once (all its slots were busy); without that, nothing is claimed early.
    await lease.complete(ok(0), { takeFollows: true });
    const next = await slot.take(new AbortController().signal);
    expect(await scriptCalls()).toBe(before + 1);
    expect(next.job.operation).toBe(second.name);
    expect(await raw.hget(`${prefix}op:${second.name}`, 'attempts')).toBe('1');
    await next.complete(ok(0));
    expect((await whenDone(front, second.name)).done).toBe(true);
    await slot.leave();
  });

  it('a job a worker claimed with its last result, and then never took, goes back to the queue when it leaves', async () => {
    const timing = { leaseMs: 60_000 };
    const [front, workers] = [await scheduler(timing), await scheduler(timing)];
    const slot = await workers.join({ name: 'leaving', platform: AMD64 });
    await front.submit(job('80'), null, ALICE.id);
    const lease = await slot.take(new AbortController().signal);
    const next = await front.submit(job('81'), null, ALICE.id);
    await lease.complete(ok(0), { takeFollows: true });
    expect(await raw.hget(`${prefix}op:${next.name}`, 'worker')).toMatch(/^leaving#/);
    await slot.leave();
    expect(await raw.hget(`${prefix}op:${next.name}`, 'stage')).toBe(String(ExecutionStage_Value.QUEUED));
    const other = await (await scheduler(timing)).join({ name: 'other', platform: AMD64 });
    const taken = await other.take(new AbortController().signal);
    expect(taken.job.operation).toBe(next.name);
    expect(await raw.hget(`${prefix}op:${next.name}`, 'attempts')).toBe('1');
    await taken.complete(ok(0));
    await other.leave();
  });

  it('a worker with another free slot stays registered as waiting when a job is handed to it: its next take just waits', async () => {
    const timing = { leaseMs: 60_000 };
    const [front, workers] = [await scheduler(timing), await scheduler(timing)];
    let running = 0;
    const report = () => ({ running, slots: 2, done: 0, failed: 0 });
    const slot = await workers.join({ name: 'two', platform: AMD64, report });
    const first = slot.take(new AbortController().signal);
    for (let i = 0; i < 100 && (await raw.hlen(`${prefix}idle`)) === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    const a = await front.submit(job('90'), null, ALICE.id);
    const leaseA = await first;
    expect(leaseA.job.operation).toBe(a.name);
    running = 1;
    const before = await scriptCalls();
    const second = slot.take(new AbortController().signal);
    // Handed to it without a claim in between: the only script is the submit.
    const b = await front.submit(job('91'), null, ALICE.id);
    expect(await raw.hget(`${prefix}op:${b.name}`, 'worker')).toMatch(/^two#/);
    const leaseB = await second;
    expect(leaseB.job.operation).toBe(b.name);
    expect(await scriptCalls()).toBe(before + 1);
    // Both its slots busy now: it is not registered as waiting any more, and the next job is queued.
    expect(await raw.hlen(`${prefix}idle`)).toBe(0);
    const c = await front.submit(job('92'), null, ALICE.id);
    expect(await raw.hget(`${prefix}op:${c.name}`, 'stage')).toBe(String(ExecutionStage_Value.QUEUED));
    await leaseA.complete(ok(0));
    await leaseB.complete(ok(0));
    expect(leaseA.job.operation).not.toBe(leaseB.job.operation);
    // The two leases are told apart: each result was recorded for its own operation.
    expect((await front.get(a.name, ALICE))?.done).toBe(true);
    expect((await front.get(b.name, ALICE))?.done).toBe(true);
    await slot.leave();
  });

  it('a result that frees a slot while its worker waits for work lets the waiting worker be handed one job more', async () => {
    const timing = { leaseMs: 60_000 };
    const [front, workers] = [await scheduler(timing), await scheduler(timing)];
    let running = 0;
    const report = () => ({ running, slots: 2, done: 0, failed: 0 });
    const slot = await workers.join({ name: 'two', platform: AMD64, report });
    await front.submit(job('93'), null, ALICE.id);
    const leaseX = await slot.take(new AbortController().signal);
    running = 1;
    // It waits for work with one slot free: registered for one job.
    const first = slot.take(new AbortController().signal);
    for (let i = 0; i < 100 && (await raw.hlen(`${prefix}idle`)) === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    const before = await scriptCalls();
    await leaseX.complete(ok(0));
    running = 0;
    const a = await front.submit(job('94'), null, ALICE.id);
    expect((await first).job.operation).toBe(a.name);
    running = 1;
    const second = slot.take(new AbortController().signal);
    const b = await front.submit(job('95'), null, ALICE.id);
    expect(await raw.hget(`${prefix}op:${b.name}`, 'worker')).toMatch(/^two#/);
    expect((await second).job.operation).toBe(b.name);
    // The result, and the two submits: no claim.
    expect(await scriptCalls()).toBe(before + 3);
    await slot.leave();
  });
});
