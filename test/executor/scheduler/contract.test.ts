// The contract every Scheduler keeps (executor/scheduler/scheduler.ts), as one suite run against each: the
// in-memory scheduler, and the Redis one against a real redis-server with separate RedisScheduler instances
// standing for frontends and worker processes. What only one of them does (a fleet's wake-ups, worker identities,
// stranded jobs, forged queue entries; the in-memory retention count) stays in its own suite.
import { create } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { workerPlatform } from '../../../executor/reapi/platform.ts';
import { MemoryScheduler } from '../../../executor/scheduler/memory-scheduler.ts';
import { FleetConnection } from '../../../executor/scheduler/redis/fleet-connection.ts';
import { RedisScheduler, type RedisSchedulerOptions } from '../../../executor/scheduler/redis/redis-scheduler.ts';
import {
  type Lease,
  MAX_WAITERS,
  type OperationState,
  type Scheduler,
  type WorkerInfo,
} from '../../../executor/scheduler/scheduler.ts';
import { createLogger } from '../../../shared/log.ts';
import { ExecuteResponseSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { ALICE, aborted, BOB, job, MALLORY, OPERATOR, ok, whenDone } from './fixtures.ts';

const AMD64 = workerPlatform(new Map([['Arch', ['amd64']]]), ['local']);
const ARM64 = workerPlatform(new Map([['Arch', ['arm64']]]), ['local']);

const idOf = (lease: Lease) => lease.job.command.arguments[1];

const stopped = create(ExecuteResponseSchema, { status: { code: Code.CANCELLED, message: 'stopped' } });

/** One scheduler "deployment" for one test. */
interface Fleet {
  /** Where clients submit and follow operations. */
  front: Scheduler;
  /** Another frontend: in one process the same scheduler, in a fleet another one sharing its state. */
  otherFront: Scheduler;
  /** Where workers join: in a fleet a worker process's own scheduler. */
  workers: Scheduler;
  /** Returns once operations finished before the call are past their retention (retainMs, given to open). */
  pastRetention(): Promise<void>;
  /** Where leases apply: a worker process that can die (its leases then stop being renewed). */
  mortalWorkers?(): Promise<{ scheduler: Scheduler; die(): void }>;
  /** Where leases apply: makes the lease on an operation expire now, as if its holder had gone silent. */
  expireLease?(name: string): Promise<void>;
}

interface FleetOptions {
  retainMs?: number;
  leaseMs?: number;
  maxAttempts?: number;
}

interface SchedulerTarget {
  open(options?: FleetOptions): Promise<Fleet>;
  /** Whether jobs are leased to workers (renewed, requeued when their holder dies, given up after maxAttempts). */
  leases: boolean;
}

const never = new AbortController().signal;

/**
 * A worker that becomes warm for a persistentWorkerKey once it has run a job of that key (as a persistent
 * worker process stays up after its first action), and is warm only while none of its jobs runs (one process).
 */
function warmingWorker(name: string): WorkerInfo & { ran(lease: Lease): Promise<void> } {
  const warm = new Set<string>();
  let running = 0;
  return {
    name,
    platform: AMD64,
    warmFor: (j) => running === 0 && warm.has(j.platform.options.get('persistentWorkerKey') ?? ''),
    async ran(lease) {
      running++;
      try {
        await lease.complete(ok(0));
      } finally {
        running--;
        const key = lease.job.platform.options.get('persistentWorkerKey');
        if (key !== undefined) warm.add(key);
      }
    },
  };
}

function describeSchedulerContract(name: string, target: SchedulerTarget): void {
  describe(`${name}: scheduler contract`, () => {
    it('hands jobs out by priority, then first come first served', async () => {
      const { front, workers } = await target.open();
      const slot = await workers.join({ name: 'w', platform: AMD64 });
      await front.submit(job('a'), null, ALICE.id);
      await front.submit(job('b', { priority: 5 }), null, ALICE.id);
      await front.submit(job('c', { priority: -5 }), null, ALICE.id);
      await front.submit(job('d'), null, ALICE.id);
      const order = [];
      for (let i = 0; i < 4; i++) order.push(idOf(await slot.take(never)));
      expect(order).toEqual(['c', 'a', 'd', 'b']);
    });

    it('takes the most urgent job first across every platform queue a worker satisfies', async () => {
      const { front, workers } = await target.open();
      const platform = workerPlatform(
        new Map([
          ['Arch', ['amd64']],
          ['Pool', ['big']],
        ]),
        ['local'],
      );
      const slot = await workers.join({ name: 'any', platform });
      await front.submit(job('low', { priority: 5 }), null, ALICE.id);
      await front.submit(job('urgent', { pool: 'big', priority: -5 }), null, ALICE.id);
      expect(idOf(await slot.take(never))).toBe('urgent');
      expect(idOf(await slot.take(never))).toBe('low');
    });

    it('a worker waiting in take gets a job submitted later, and only one of its platform', async () => {
      const { front, workers } = await target.open();
      const amd = await workers.join({ name: 'amd', platform: AMD64 });
      const arm = await workers.join({ name: 'arm', platform: ARM64 });
      const stop = new AbortController();
      const armTake = arm.take(stop.signal);
      const amdTake = amd.take(stop.signal);
      await front.submit(job('arm', { arch: 'arm64' }), null, ALICE.id);
      const lease = await armTake;
      expect(idOf(lease)).toBe('arm');
      await lease.complete(ok(0));
      await front.submit(job('amd'), null, ALICE.id);
      expect(idOf(await amdTake)).toBe('amd');
      stop.abort(new Error('done'));
      await expect(arm.take(stop.signal)).rejects.toThrow('done');
    });

    it('merges identical submissions (on any frontend) into the operation in flight, until it finishes', async () => {
      const { front, otherFront, workers } = await target.open();
      const slot = await workers.join({ name: 'w', platform: AMD64 });
      const first = await front.submit(job('a'), 'k', ALICE.id);
      expect((await otherFront.submit(job('a'), 'k', ALICE.id)).name).toBe(first.name);
      expect((await front.submit(job('a'), null, ALICE.id)).name).not.toBe(first.name);
      const doneOnOther = whenDone(otherFront, first.name);
      const lease = await slot.take(never);
      expect(lease.job.operation).toBe(first.name);
      await lease.executing();
      expect((await front.get(first.name, ALICE))?.stage).toBe(3);
      await lease.complete(ok(7));
      expect((await doneOnOther).response?.result?.exitCode).toBe(7);
      expect(await front.stats()).toMatchObject({ submitted: 2, merged: 1, completed: 1, queued: 1, running: 0 });
      // Finished: the next identical submission is a new operation.
      expect((await otherFront.submit(job('a'), 'k', ALICE.id)).name).not.toBe(first.name);
    });

    it('records at most MAX_WAITERS waiters on one operation; a submission beyond them gets one of its own', async () => {
      const { front, workers } = await target.open();
      await workers.join({ name: 'w', platform: AMD64 });
      const op = await front.submit(job('a'), 'a', 'waiter-0');
      for (let i = 1; i < MAX_WAITERS; i++)
        expect((await front.submit(job('a'), 'a', `waiter-${i}`)).name).toBe(op.name);
      expect((await front.submit(job('a'), 'a', 'waiter-0')).name).toBe(op.name);
      expect((await front.submit(job('a'), 'a', 'one-too-many')).name).not.toBe(op.name);
      // The full operation stays the one that later submissions of known waiters join.
      expect((await front.submit(job('a'), 'a', 'waiter-7')).name).toBe(op.name);
    });

    it('fails fast with FAILED_PRECONDITION when no worker could run the action, naming what is missing', async () => {
      const { front, workers } = await target.open();
      await expect(front.submit(job('a'), null, ALICE.id)).rejects.toMatchObject({
        code: Code.FAILED_PRECONDITION,
        message: expect.stringContaining('no worker'),
      });
      await workers.join({ name: 'arm', platform: ARM64 });
      await expect(front.submit(job('a'), 'a', ALICE.id)).rejects.toMatchObject({
        code: Code.FAILED_PRECONDITION,
        message: expect.stringMatching(/none offers Arch=amd64.*Arch=arm64/),
      });
      const amd = await workers.join({ name: 'amd', platform: AMD64 });
      await front.submit(job('a'), null, ALICE.id);
      // A worker that left counts no more.
      await amd.leave();
      await expect(front.submit(job('b'), null, ALICE.id)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
      expect(await front.stats()).toMatchObject({ submitted: 1, queued: 1 });
    });

    it('hands a job to a worker warm for its persistentWorkerKey, and to a cold one when the warm one is busy', async () => {
      const { front, workers } = await target.open();
      const cold = warmingWorker('cold');
      const warm = warmingWorker('warm');
      const coldSlot = await workers.join(cold);
      const warmSlot = await workers.join(warm);
      // The warm worker becomes warm by running the key's first job.
      await front.submit(job('first', { key: 'tool' }), null, ALICE.id);
      await warm.ran(await warmSlot.take(never));
      // Both wait, the cold one first: the job goes to the warm one.
      const coldTake = coldSlot.take(never);
      const warmTake = warmSlot.take(never);
      await front.submit(job('a', { key: 'tool' }), null, ALICE.id);
      const warmLease = await warmTake;
      expect(idOf(warmLease)).toBe('a');
      // The warm one is busy with it: the next job of the key goes to the cold one rather than wait.
      await front.submit(job('b', { key: 'tool' }), null, ALICE.id);
      expect(idOf(await coldTake)).toBe('b');
      await warm.ran(warmLease);
    });

    it('a worker warm for a job further down the queue takes that one first', async () => {
      const { front, workers } = await target.open();
      const warm = warmingWorker('warm');
      const slot = await workers.join(warm);
      await front.submit(job('first', { key: 'tool' }), null, ALICE.id);
      await warm.ran(await slot.take(never));
      await front.submit(job('a'), null, ALICE.id);
      await front.submit(job('b', { key: 'other' }), null, ALICE.id);
      await front.submit(job('c', { key: 'tool' }), null, ALICE.id);
      expect(idOf(await slot.take(never))).toBe('c');
      expect(idOf(await slot.take(never))).toBe('a');
      expect(idOf(await slot.take(never))).toBe('b');
    });

    it('cancels a queued operation at once, and a running one through its holder', async () => {
      const { front, workers } = await target.open();
      const slot = await workers.join({ name: 'w', platform: AMD64 });
      const running = await front.submit(job('running'), null, ALICE.id);
      const queued = await front.submit(job('queued'), null, ALICE.id);
      const lease = await slot.take(never);
      expect(lease.job.operation).toBe(running.name);
      expect(await front.cancel(queued.name, ALICE)).toBe(true);
      expect((await front.get(queued.name, ALICE))?.response?.status?.code).toBe(Code.CANCELLED);
      expect((await front.stats()).queued).toBe(0);
      expect(lease.signal.aborted).toBe(false);
      expect(await front.cancel(running.name, ALICE)).toBe(true);
      await aborted(lease.signal);
      await lease.complete(stopped);
      expect((await front.get(running.name, OPERATOR))?.response?.status?.message).toBe('stopped');
      expect(await front.cancel('operations/unknown', ALICE)).toBe(false);
      expect(await front.get('operations/unknown', ALICE)).toBeNull();
    });

    it("shows an operation only to its waiters and operators; a waiter's cancel detaches only that waiter", async () => {
      const { front, otherFront, workers } = await target.open();
      const slot = await workers.join({ name: 'w', platform: AMD64 });
      const op = await front.submit(job('a'), 'a', ALICE.id);
      expect((await otherFront.submit(job('a'), 'a', BOB.id)).name).toBe(op.name);
      const lease = await slot.take(never);
      for (const f of [front, otherFront]) {
        expect(await f.get(op.name, MALLORY)).toBeNull();
        expect(await f.cancel(op.name, MALLORY)).toBe(false);
        expect((await f.get(op.name, OPERATOR))?.name).toBe(op.name);
      }
      // Bob's cancel ends his wait only: his followers are told, and see it done for him; Alice's run goes on.
      let told = () => {};
      const bobTold = new Promise<void>((resolve) => (told = resolve));
      const unsubscribe = await otherFront.subscribe(op.name, () => told());
      expect(await otherFront.cancel(op.name, BOB)).toBe(true);
      await bobTold;
      unsubscribe?.();
      expect(await front.get(op.name, BOB)).toMatchObject({
        done: true,
        response: { status: { code: Code.CANCELLED } },
      });
      expect((await otherFront.get(op.name, ALICE))?.done).toBe(false);
      expect(await otherFront.cancel(op.name, BOB)).toBe(true); // again: nothing more is his to stop
      expect(lease.signal.aborted).toBe(false);
      // Bob submits again while it runs: he waits again, and Alice's cancel no longer stops it.
      expect((await otherFront.submit(job('a'), 'a', BOB.id)).name).toBe(op.name);
      expect((await front.get(op.name, BOB))?.done).toBe(false);
      expect(await front.cancel(op.name, ALICE)).toBe(true);
      expect(lease.signal.aborted).toBe(false);
      // The last waiter's cancel reaches the holder, and nobody joins the stopping run.
      expect(await otherFront.cancel(op.name, BOB)).toBe(true);
      await aborted(lease.signal);
      expect((await front.submit(job('a'), 'a', ALICE.id)).name).not.toBe(op.name);
      await lease.complete(stopped);
      expect((await front.get(op.name, OPERATOR))?.response?.status?.message).toBe('stopped');
      expect(await front.get(op.name, MALLORY)).toBeNull();
    });

    it("an operator's cancel stops the run of an operation it does not wait on, for every waiter", async () => {
      const { front, workers } = await target.open();
      await workers.join({ name: 'arm', platform: ARM64 });
      const op = await front.submit(job('a', { arch: 'arm64' }), 'a', ALICE.id);
      await front.submit(job('a', { arch: 'arm64' }), 'a', BOB.id);
      expect(await front.cancel(op.name, OPERATOR)).toBe(true);
      for (const caller of [ALICE, BOB, OPERATOR])
        expect((await front.get(op.name, caller))?.response?.status?.code).toBe(Code.CANCELLED);
      expect((await front.stats()).queued).toBe(0);
    });

    it('forgets a finished operation after the retention time', async () => {
      const fleet = await target.open({ retainMs: 300 });
      const slot = await fleet.workers.join({ name: 'w', platform: AMD64 });
      const op = await fleet.front.submit(job('a'), 'a', ALICE.id);
      await (await slot.take(never)).complete(ok(0));
      expect((await fleet.front.get(op.name, ALICE))?.done).toBe(true);
      await fleet.pastRetention();
      expect(await fleet.front.get(op.name, ALICE)).toBeNull();
      expect(await fleet.front.subscribe(op.name, () => {})).toBeNull();
    });

    if (!target.leases) return;

    it('requeues the job of a worker that stopped renewing its lease; another worker completes it once', async () => {
      const fleet = await target.open({ leaseMs: 600 });
      const dying = await fleet.mortalWorkers!();
      const dyingSlot = await dying.scheduler.join({ name: 'dying', platform: AMD64 });
      const op = await fleet.front.submit(job('a'), 'a', ALICE.id);
      expect((await dyingSlot.take(never)).job.operation).toBe(op.name);
      dying.die();
      const survivor = await fleet.workers.join({ name: 'survivor', platform: AMD64 });
      const second = await survivor.take(never);
      expect(second.job.operation).toBe(op.name);
      await second.complete(ok(3));
      expect((await whenDone(fleet.front, op.name)).response?.result?.exitCode).toBe(3);
      expect((await fleet.front.stats()).completed).toBe(1);
    });

    it('records only the current holder’s result: a worker whose lease was taken away is told, its result dropped', async () => {
      const fleet = await target.open({ leaseMs: 900 });
      const w1 = await fleet.workers.join({ name: 'w1', platform: AMD64 });
      const op = await fleet.front.submit(job('a'), null, ALICE.id);
      const lease1 = await w1.take(never);
      await fleet.expireLease!(op.name);
      const w2 = await (await fleet.mortalWorkers!()).scheduler.join({ name: 'w2', platform: AMD64 });
      const lease2 = await w2.take(never);
      expect(lease2.job.operation).toBe(op.name);
      await aborted(lease1.signal);
      expect(String(lease1.signal.reason)).toContain('lost its lease');
      await lease1.complete(ok(1));
      expect((await fleet.front.get(op.name, ALICE))?.done).toBe(false);
      await lease2.complete(ok(2));
      expect((await fleet.front.get(op.name, ALICE))?.response?.result?.exitCode).toBe(2);
    });

    it('fails an action with a clear message after maxAttempts deliveries instead of bouncing forever', async () => {
      const fleet = await target.open({ leaseMs: 500, maxAttempts: 2 });
      let op: OperationState | null = null;
      for (let i = 0; i < 2; i++) {
        const doomed = await fleet.mortalWorkers!();
        const slot = await doomed.scheduler.join({ name: `doomed-${i}`, platform: AMD64 });
        op ??= await fleet.front.submit(job('a'), null, ALICE.id);
        expect((await slot.take(never)).job.operation).toBe(op.name);
        doomed.die();
      }
      const state = await whenDone(fleet.front, op!.name);
      expect(state.response?.status?.code).toBe(Code.UNAVAILABLE);
      expect(state.response?.status?.message).toMatch(/given to 2 workers in turn .* gave up/);
    });
  });
}

describeSchedulerContract('MemoryScheduler', {
  leases: false,
  async open(options = {}) {
    let now = 0;
    const scheduler = new MemoryScheduler({ retainMs: options.retainMs, now: () => now });
    return {
      front: scheduler,
      otherFront: scheduler,
      workers: scheduler,
      async pastRetention() {
        now += options.retainMs! + 1;
      },
    };
  },
});

describe.runIf(haveRedis())('on a real Redis', () => {
  let redis: TestRedis;
  let raw: Redis;
  const open: RedisScheduler[] = [];
  let fleets = 0;

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
  }, 30_000);
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.close();
  });

  describeSchedulerContract('RedisScheduler', {
    leases: true,
    async open(options = {}) {
      // A prefix of its own per test: a fleet of its own on the shared redis-server.
      const prefix = `c${++fleets}:`;
      const member = async () => {
        const fleet = await FleetConnection.open({
          url: redis.url,
          log: createLogger('silent'),
          prefix,
          shutdownGraceMs: 200,
          ...(options as Partial<RedisSchedulerOptions>),
        });
        const scheduler = new RedisScheduler(fleet);
        open.push(scheduler);
        return { scheduler, fleet };
      };
      const [front, otherFront, workers] = await Promise.all([member(), member(), member()]);
      return {
        front: front.scheduler,
        otherFront: otherFront.scheduler,
        workers: workers.scheduler,
        async pastRetention() {
          // Redis expires finished operations by itself: wait for it (bounded), as a client would see it.
          for (let i = 0; i < 100; i++) {
            if ((await raw.keys(`${prefix}op:*`)).length === 0) return;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          throw new Error('finished operations were still in Redis 5 s after their retention');
        },
        async mortalWorkers() {
          const { scheduler, fleet } = await member();
          // The process is gone: no more renewals, no heartbeat.
          return { scheduler, die: () => fleet.disconnect(fleet.redis) };
        },
        async expireLease(name) {
          await raw.zadd(`${prefix}leases`, 0, name);
        },
      };
    },
  });
});
