// The embedded scheduler on its own: routing, merging, priority order, affinity and retention, with a clock of
// the test's own where time matters.
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { splitPlatform, workerPlatform } from '../../../executor/reapi/platform.ts';
import { MemoryScheduler } from '../../../executor/scheduler/memory-scheduler.ts';
import { type Caller, type ExecutionJob, MAX_WAITERS } from '../../../executor/scheduler/scheduler.ts';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import {
  ActionSchema,
  CommandSchema,
  ExecuteResponseSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

const amd64 = workerPlatform(new Map([['Arch', ['amd64']]]), ['local']);

function job(
  hash: string,
  options: { priority?: number; properties?: Record<string, string> } = {},
): Omit<ExecutionJob, 'operation'> {
  const platform = { properties: Object.entries(options.properties ?? {}).map(([name, value]) => ({ name, value })) };
  return {
    instance: '',
    actionDigest: { hash: hash.padEnd(64, '0'), sizeBytes: 1 },
    action: create(ActionSchema, {}),
    command: create(CommandSchema, { arguments: ['/bin/true'] }),
    // Never read here: the in-memory scheduler hands the job over as it is (a fleet's workers hash them).
    encoded: { action: new Uint8Array(), command: new Uint8Array() },
    platform: splitPlatform(create(ActionSchema, { platform }).platform, undefined),
    timeoutMs: 1000,
    priority: options.priority ?? 0,
    queuedAt: new Date(),
  };
}

const never = new AbortController().signal;
const ALICE: Caller = { id: 'basic:alice', operator: false };
const BOB: Caller = { id: 'basic:bob', operator: false };
const MALLORY: Caller = { id: 'basic:mallory', operator: false };
const OPERATOR: Caller = { id: 'basic:carol', operator: true };

describe('MemoryScheduler', () => {
  it('reports each platform queue with its oldest wait (kept at 0 once empty) and its workers with their reports', async () => {
    let now = 11_000;
    const scheduler = new MemoryScheduler({ now: () => now });
    const arm64 = workerPlatform(new Map([['Arch', ['arm64']]]), ['local']);
    const report = { running: 1, slots: 4, done: 7, failed: 2 };
    const amd = await scheduler.join({ name: 'amd', platform: amd64, report: () => report });
    await scheduler.join({ name: 'arm', platform: arm64 });
    const at = (ms: number, properties: Record<string, string>) => ({
      ...job(`${ms}`, { properties }),
      queuedAt: new Date(ms),
    });
    await scheduler.submit(at(1_000, { Arch: 'amd64' }), null, ALICE.id);
    await scheduler.submit(at(5_000, { Arch: 'amd64' }), null, ALICE.id);
    await scheduler.submit(at(8_000, { Arch: 'arm64' }), null, ALICE.id);
    const stats = await scheduler.stats();
    expect(stats.queues).toEqual([
      { platform: 'Arch=amd64', queued: 2, oldestQueuedSeconds: 10 },
      { platform: 'Arch=arm64', queued: 1, oldestQueuedSeconds: 3 },
    ]);
    expect(stats.workers).toEqual([
      { name: 'amd', platform: 'Arch=amd64, OSFamily=linux', ...report, lastSeen: new Date(11_000) },
      {
        name: 'arm',
        platform: 'Arch=arm64, OSFamily=linux',
        running: 0,
        slots: 0,
        done: 0,
        failed: 0,
        lastSeen: new Date(11_000),
      },
    ]);
    await amd.take(never);
    await amd.take(never);
    now = 20_000;
    expect((await scheduler.stats()).queues).toEqual([
      { platform: 'Arch=amd64', queued: 0, oldestQueuedSeconds: 0 },
      { platform: 'Arch=arm64', queued: 1, oldestQueuedSeconds: 12 },
    ]);
  });

  it('hands jobs out by priority, then first come first served', async () => {
    const scheduler = new MemoryScheduler();
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    await scheduler.submit(job('a'), 'a', ALICE.id);
    await scheduler.submit(job('b', { priority: 5 }), 'b', ALICE.id);
    await scheduler.submit(job('c', { priority: -5 }), 'c', ALICE.id);
    await scheduler.submit(job('d'), 'd', ALICE.id);
    const order = [];
    for (let i = 0; i < 4; i++) order.push((await slot.take(never)).job.actionDigest.hash[0]);
    expect(order).toEqual(['c', 'a', 'd', 'b']);
  });

  it('merges a submission into the operation in flight under the same key, until it finishes', async () => {
    const scheduler = new MemoryScheduler();
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const first = await scheduler.submit(job('a'), 'k', ALICE.id);
    expect((await scheduler.submit(job('a'), 'k', ALICE.id)).name).toBe(first.name);
    expect((await scheduler.submit(job('a'), null, ALICE.id)).name).not.toBe(first.name);
    const lease = await slot.take(never);
    await lease.complete(create(ExecuteResponseSchema, {}));
    expect((await scheduler.submit(job('a'), 'k', ALICE.id)).name).not.toBe(first.name);
    expect(await scheduler.stats()).toMatchObject({ submitted: 3, merged: 1, completed: 1 });
  });

  it('prefers a worker that is warm for the job (affinity), and never strands a job when none is', async () => {
    const scheduler = new MemoryScheduler();
    const key = (j: ExecutionJob) => j.platform.options.get('persistentWorkerKey');
    const cold = await scheduler.join({ name: 'cold', platform: amd64, warmFor: () => false });
    const warm = await scheduler.join({ name: 'warm', platform: amd64, warmFor: (j) => key(j) === 'tool' });
    const coldTake = cold.take(never);
    const warmTake = warm.take(never);
    await scheduler.submit(job('a', { properties: { persistentWorkerKey: 'tool' } }), 'a', ALICE.id);
    expect((await warmTake).job.actionDigest.hash[0]).toBe('a');
    await scheduler.submit(job('b', { properties: { persistentWorkerKey: 'tool' } }), 'b', ALICE.id);
    expect((await coldTake).job.actionDigest.hash[0]).toBe('b');
  });

  it('a worker that is warm for a job further down the queue takes that one first', async () => {
    const scheduler = new MemoryScheduler();
    const warm = await scheduler.join({
      name: 'warm',
      platform: amd64,
      warmFor: (j) => j.platform.options.get('persistentWorkerKey') === 'tool',
    });
    await scheduler.submit(job('a'), 'a', ALICE.id);
    await scheduler.submit(job('b', { properties: { persistentWorkerKey: 'tool' } }), 'b', ALICE.id);
    expect((await warm.take(never)).job.actionDigest.hash[0]).toBe('b');
    expect((await warm.take(never)).job.actionDigest.hash[0]).toBe('a');
  });

  it('forgets finished operations after the retention time, and beyond the retention count', async () => {
    let now = 0;
    const scheduler = new MemoryScheduler({ retainMs: 1000, retainCount: 2, now: () => now });
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const names = [];
    for (const hash of ['a', 'b', 'c']) {
      names.push((await scheduler.submit(job(hash), hash, ALICE.id)).name);
      await (await slot.take(never)).complete(create(ExecuteResponseSchema, {}));
    }
    expect(await scheduler.get(names[0]!, ALICE)).toBeNull(); // over the count
    expect((await scheduler.get(names[2]!, ALICE))?.done).toBe(true);
    now = 1500;
    expect(await scheduler.get(names[2]!, ALICE)).toBeNull(); // past the time
  });

  it('cancels a queued operation at once', async () => {
    const scheduler = new MemoryScheduler();
    await scheduler.join({ name: 'w', platform: workerPlatform(new Map([['Arch', ['arm64']]]), ['local']) });
    const state = await scheduler.submit(job('a', { properties: { Arch: 'arm64' } }), 'a', ALICE.id);
    // The worker never asks for work, so the operation stays queued.
    expect(await scheduler.cancel(state.name, ALICE)).toBe(true);
    const after = await scheduler.get(state.name, ALICE);
    expect(after?.done).toBe(true);
    expect(after?.response?.status?.code).toBe(1);
    expect((await scheduler.stats()).queued).toBe(0);
  });

  it('shows an operation only to its waiters and to operators: to anyone else it is unknown', async () => {
    const scheduler = new MemoryScheduler();
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const op = await scheduler.submit(job('a'), 'a', ALICE.id);
    expect(await scheduler.get(op.name, MALLORY)).toBeNull();
    expect(await scheduler.cancel(op.name, MALLORY)).toBe(false);
    expect((await scheduler.get(op.name, ALICE))?.done).toBe(false);
    expect((await scheduler.get(op.name, OPERATOR))?.name).toBe(op.name);
    const lease = await slot.take(never);
    expect(lease.signal.aborted).toBe(false);
    await lease.complete(create(ExecuteResponseSchema, { result: { exitCode: 3 } }));
    expect((await scheduler.get(op.name, ALICE))?.response?.result?.exitCode).toBe(3);
    expect(await scheduler.get(op.name, MALLORY)).toBeNull();
  });

  it("a waiter's cancel of a merged operation detaches only that waiter; the last waiter's stops the run", async () => {
    const scheduler = new MemoryScheduler();
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const op = await scheduler.submit(job('a'), 'a', ALICE.id);
    expect((await scheduler.submit(job('a'), 'a', BOB.id)).name).toBe(op.name);
    const lease = await slot.take(never);
    let changes = 0;
    await scheduler.subscribe(op.name, () => changes++);
    expect(await scheduler.cancel(op.name, BOB)).toBe(true);
    expect(changes).toBe(1); // Bob's followers are told, and see it done for him
    expect(await scheduler.get(op.name, BOB)).toMatchObject({
      done: true,
      response: { status: { code: Code.CANCELLED } },
    });
    expect((await scheduler.get(op.name, ALICE))?.done).toBe(false);
    expect(await scheduler.cancel(op.name, BOB)).toBe(true); // again: nothing more is his to stop
    expect(lease.signal.aborted).toBe(false);
    // Bob submits again while it runs: he waits again, and Alice's cancel no longer stops it.
    expect((await scheduler.submit(job('a'), 'a', BOB.id)).name).toBe(op.name);
    expect((await scheduler.get(op.name, BOB))?.done).toBe(false);
    expect(await scheduler.cancel(op.name, ALICE)).toBe(true);
    expect(lease.signal.aborted).toBe(false);
    expect(await scheduler.cancel(op.name, BOB)).toBe(true);
    expect(lease.signal.aborted).toBe(true);
    // Nobody joins a run that is being stopped.
    expect((await scheduler.submit(job('a'), 'a', ALICE.id)).name).not.toBe(op.name);
    await lease.complete(create(ExecuteResponseSchema, { status: { code: Code.CANCELLED, message: 'stopped' } }));
    expect((await scheduler.get(op.name, OPERATOR))?.response?.status?.message).toBe('stopped');
  });

  it("an operator's cancel stops the run of an operation it does not wait on", async () => {
    const scheduler = new MemoryScheduler();
    await scheduler.join({ name: 'w', platform: workerPlatform(new Map([['Arch', ['arm64']]]), ['local']) });
    const op = await scheduler.submit(job('a', { properties: { Arch: 'arm64' } }), 'a', ALICE.id);
    await scheduler.submit(job('a', { properties: { Arch: 'arm64' } }), 'a', BOB.id);
    expect(await scheduler.cancel(op.name, OPERATOR)).toBe(true);
    expect((await scheduler.get(op.name, ALICE))?.response?.status?.code).toBe(Code.CANCELLED);
    expect((await scheduler.get(op.name, BOB))?.response?.status?.code).toBe(Code.CANCELLED);
    expect((await scheduler.stats()).queued).toBe(0);
  });

  it('records at most MAX_WAITERS waiters on one operation; a submission beyond them gets one of its own', async () => {
    const scheduler = new MemoryScheduler();
    await scheduler.join({ name: 'w', platform: amd64 });
    const op = await scheduler.submit(job('a'), 'a', 'waiter-0');
    for (let i = 1; i < MAX_WAITERS; i++)
      expect((await scheduler.submit(job('a'), 'a', `waiter-${i}`)).name).toBe(op.name);
    expect((await scheduler.submit(job('a'), 'a', 'waiter-0')).name).toBe(op.name);
    const own = await scheduler.submit(job('a'), 'a', 'one-too-many');
    expect(own.name).not.toBe(op.name);
    // The full operation stays the one that later submissions of known waiters join.
    expect((await scheduler.submit(job('a'), 'a', 'waiter-7')).name).toBe(op.name);
  });
});
