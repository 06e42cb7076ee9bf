// The embedded scheduler on its own: routing, merging, priority order, affinity and retention, with a clock of
// the test's own where time matters.
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { splitPlatform, workerPlatform } from '../../../executor/execution/platform.ts';
import { MemoryScheduler } from '../../../executor/scheduler/memory-scheduler.ts';
import type { ExecutionJob } from '../../../executor/scheduler/scheduler.ts';
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
    platform: splitPlatform(create(ActionSchema, { platform }).platform, undefined),
    timeoutMs: 1000,
    priority: options.priority ?? 0,
    queuedAt: new Date(),
  };
}

const never = new AbortController().signal;

describe('MemoryScheduler', () => {
  it('hands jobs out by priority, then first come first served', async () => {
    const scheduler = new MemoryScheduler();
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    await scheduler.submit(job('a'), 'a');
    await scheduler.submit(job('b', { priority: 5 }), 'b');
    await scheduler.submit(job('c', { priority: -5 }), 'c');
    await scheduler.submit(job('d'), 'd');
    const order = [];
    for (let i = 0; i < 4; i++) order.push((await slot.take(never)).job.actionDigest.hash[0]);
    expect(order).toEqual(['c', 'a', 'd', 'b']);
  });

  it('merges a submission into the operation in flight under the same key, until it finishes', async () => {
    const scheduler = new MemoryScheduler();
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const first = await scheduler.submit(job('a'), 'k');
    expect((await scheduler.submit(job('a'), 'k')).name).toBe(first.name);
    expect((await scheduler.submit(job('a'), null)).name).not.toBe(first.name);
    const lease = await slot.take(never);
    await lease.complete(create(ExecuteResponseSchema, {}));
    expect((await scheduler.submit(job('a'), 'k')).name).not.toBe(first.name);
    expect(await scheduler.stats()).toMatchObject({ submitted: 3, merged: 1, completed: 1 });
  });

  it('prefers a worker that is warm for the job (affinity), and never strands a job when none is', async () => {
    const scheduler = new MemoryScheduler();
    const key = (j: ExecutionJob) => j.platform.options.get('persistentWorkerKey');
    const cold = await scheduler.join({ name: 'cold', platform: amd64, warmFor: () => false });
    const warm = await scheduler.join({ name: 'warm', platform: amd64, warmFor: (j) => key(j) === 'tool' });
    const coldTake = cold.take(never);
    const warmTake = warm.take(never);
    await scheduler.submit(job('a', { properties: { persistentWorkerKey: 'tool' } }), 'a');
    expect((await warmTake).job.actionDigest.hash[0]).toBe('a');
    await scheduler.submit(job('b', { properties: { persistentWorkerKey: 'tool' } }), 'b');
    expect((await coldTake).job.actionDigest.hash[0]).toBe('b');
  });

  it('a worker that is warm for a job further down the queue takes that one first', async () => {
    const scheduler = new MemoryScheduler();
    const warm = await scheduler.join({
      name: 'warm',
      platform: amd64,
      warmFor: (j) => j.platform.options.get('persistentWorkerKey') === 'tool',
    });
    await scheduler.submit(job('a'), 'a');
    await scheduler.submit(job('b', { properties: { persistentWorkerKey: 'tool' } }), 'b');
    expect((await warm.take(never)).job.actionDigest.hash[0]).toBe('b');
    expect((await warm.take(never)).job.actionDigest.hash[0]).toBe('a');
  });

  it('forgets finished operations after the retention time, and beyond the retention count', async () => {
    let now = 0;
    const scheduler = new MemoryScheduler({ retainMs: 1000, retainCount: 2, now: () => now });
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const names = [];
    for (const hash of ['a', 'b', 'c']) {
      names.push((await scheduler.submit(job(hash), hash)).name);
      await (await slot.take(never)).complete(create(ExecuteResponseSchema, {}));
    }
    expect(await scheduler.get(names[0]!)).toBeNull(); // over the count
    expect((await scheduler.get(names[2]!))?.done).toBe(true);
    now = 1500;
    expect(await scheduler.get(names[2]!)).toBeNull(); // past the time
  });

  it('cancels a queued operation at once', async () => {
    const scheduler = new MemoryScheduler();
    await scheduler.join({ name: 'w', platform: workerPlatform(new Map([['Arch', ['arm64']]]), ['local']) });
    const state = await scheduler.submit(job('a', { properties: { Arch: 'arm64' } }), 'a');
    // The worker never asks for work, so the operation stays queued.
    expect(await scheduler.cancel(state.name)).toBe(true);
    const after = await scheduler.get(state.name);
    expect(after?.done).toBe(true);
    expect(after?.response?.status?.code).toBe(1);
    expect((await scheduler.stats()).queued).toBe(0);
  });
});
