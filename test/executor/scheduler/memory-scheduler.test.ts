// What only the embedded scheduler does: its platform-queue and worker figures, and a bound on how many finished
// operations it remembers. Everything the Scheduler interface promises is in contract.test.ts, run against this
// scheduler and the Redis one.
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { splitPlatform, workerPlatform } from '../../../executor/reapi/platform.ts';
import { MemoryScheduler } from '../../../executor/scheduler/memory-scheduler.ts';
import type { Caller, ExecutionJob } from '../../../executor/scheduler/scheduler.ts';
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
const _BOB: Caller = { id: 'basic:bob', operator: false };
const _MALLORY: Caller = { id: 'basic:mallory', operator: false };
const _OPERATOR: Caller = { id: 'basic:carol', operator: true };

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

  it('forgets finished operations beyond the retention count, the oldest first', async () => {
    const scheduler = new MemoryScheduler({ retainCount: 2 });
    const slot = await scheduler.join({ name: 'w', platform: amd64 });
    const names = [];
    for (const hash of ['a', 'b', 'c']) {
      names.push((await scheduler.submit(job(hash), hash, ALICE.id)).name);
      await (await slot.take(never)).complete(create(ExecuteResponseSchema, {}));
    }
    expect(await scheduler.get(names[0]!, ALICE)).toBeNull(); // over the count
    expect((await scheduler.get(names[1]!, ALICE))?.done).toBe(true);
    expect((await scheduler.get(names[2]!, ALICE))?.done).toBe(true);
  });
});
