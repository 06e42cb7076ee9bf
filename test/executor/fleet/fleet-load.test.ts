// The fleet under load and through a Redis restart: one redis-server (append-only), one frontend, two amd64
// `larder worker` processes, all started once for the file.
import { create, toBinary } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ActionSchema,
  CommandSchema,
  DigestSchema,
  type Digest,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { Operation } from '../../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { peakRssMiB } from '../../helpers/proc.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { ActionFixture, finalResponse } from '../execution/fixture.ts';
import { type Clients, clientsFor, digestOf, drain, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

describe.runIf(haveRedis())('a fleet under load and through a Redis restart', () => {
  const dir = reachableTempDir('larder-fleet-load-');
  let redis: TestRedis;
  let raw: Redis;
  let front: ExecutorProcess;
  let workers: WorkerProcess[] = [];
  let clients: Clients;
  let fixture: ActionFixture;

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
    front = await startFrontend({ redis: redis.url, store: join(dir, 'store') });
    workers = await Promise.all(
      [0, 1].map(() => startWorker({ redis: redis.url, frontend: front.url, concurrency: 4 })),
    );
    clients = clientsFor(`127.0.0.1:${front.port}`);
    fixture = new ActionFixture(clients);
  }, 120_000);

  afterAll(async () => {
    clients?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await front?.stop();
    raw?.disconnect();
    await redis?.close();
  }, 60_000);

  /** `count` distinct trivial actions (one shared Command, one salt each), uploaded in batches. */
  async function trivialActions(count: number, tag: string, script = 'true'): Promise<Digest[]> {
    const [command] = await fixture.upload(
      toBinary(
        CommandSchema,
        create(CommandSchema, {
          arguments: ['/bin/sh', '-c', script],
          platform: { properties: [{ name: 'Arch', value: 'amd64' }] },
        }),
      ),
    );
    const emptyDir = await fixture.directory({});
    const actions = Array.from({ length: count }, (_, i) =>
      toBinary(
        ActionSchema,
        create(ActionSchema, { commandDigest: command, inputRootDigest: emptyDir, salt: Buffer.from(`${tag}-${i}`) }),
      ),
    );
    for (let at = 0; at < actions.length; at += 500) await fixture.upload(...actions.slice(at, at + 500));
    return actions.map((a) => create(DigestSchema, digestOf(a)));
  }

  it('2,000 small actions queued at once all complete, with bounded memory in the frontend and in Redis', async () => {
    const actions = await trivialActions(2000, `load-${Date.now()}`);
    const before = Number((await raw.hget('larder:stats', 'completed')) ?? 0);
    const responses = await Promise.all(
      actions.map(async (actionDigest) => finalResponse(await drain(clients.execution.execute({ actionDigest })))),
    );
    expect(responses.filter((r) => r.result?.exitCode !== 0 || (r.status?.code ?? 0) !== 0)).toEqual([]);
    expect(Number(await raw.hget('larder:stats', 'completed')) - before).toBe(2000);
    // Each worker ran a share.
    const ranOn = new Set(responses.map((r) => r.result?.executionMetadata?.worker));
    expect(ranOn.size).toBe(2);
    // Bounded: the frontend's peak RSS stays far from "everything in memory", and Redis holds finished operations
    // only as results with a TTL (the job itself is dropped when it finishes).
    const usedMemory = Number(/used_memory:(\d+)/.exec(await raw.info('memory'))![1]);
    console.info(
      `2,000 actions: frontend peak RSS ${peakRssMiB(front.pid).toFixed(0)} MiB, Redis used_memory ${(usedMemory / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(peakRssMiB(front.pid)).toBeLessThan(600);
    expect(usedMemory).toBeLessThan(64 * 1024 * 1024);
    const sample = await raw.scan('0', 'MATCH', 'larder:op:*', 'COUNT', 1000);
    for (const key of sample[1].slice(0, 50)) expect(await raw.pttl(key)).toBeGreaterThan(0);
    expect(await raw.zcard('larder:leases')).toBe(0);
  }, 300_000);

  it('Redis restarted mid-run: every action completes (a client whose stream broke collects it with WaitExecution)', async () => {
    const actions = await trivialActions(12, `restart-${Date.now()}`, 'sleep 1; echo ok');
    const names = new Map<number, string>();
    let executing = 0;
    let restarted: Promise<void> | null = null;
    const first = await Promise.all(
      actions.map(async (actionDigest, i) => {
        const seen: Operation[] = [];
        try {
          for await (const operation of clients.execution.execute({ actionDigest, skipCacheLookup: true })) {
            seen.push(operation);
            names.set(i, operation.name);
            if (!operation.done && ++executing === 4 && restarted === null) restarted = redis.restart();
          }
          return { i, response: finalResponse(seen), error: null };
        } catch (err) {
          return { i, response: null, error: err as { code: number; details: string } };
        }
      }),
    );
    expect(restarted, 'Redis was restarted while actions ran').not.toBeNull();
    await restarted;
    console.info(
      `redis restart: ${first.filter((r) => r.error !== null).length} of ${first.length} streams broke and were collected again`,
    );
    // Streams that broke while Redis was away end with a clear status, never hang; the operations live on.
    for (const broken of first.filter((r) => r.error !== null)) {
      expect(broken.error!.details, JSON.stringify(broken.error)).toMatch(/queue|Redis|gone|UNAVAILABLE|Connection/i);
    }
    const finals = await Promise.all(
      first.map(async ({ i, response }) => {
        if (response !== null) return response;
        const name = names.get(i);
        if (name !== undefined) {
          try {
            return finalResponse(await drain(clients.execution.waitExecution({ name })));
          } catch {
            // NOT_FOUND: as Bazel does, Execute again.
          }
        }
        return finalResponse(
          await drain(clients.execution.execute({ actionDigest: actions[i]!, skipCacheLookup: true })),
        );
      }),
    );
    for (const response of finals) {
      expect(response.status?.code ?? 0, response.status?.message).toBe(0);
      expect(response.result?.exitCode).toBe(0);
    }
  }, 180_000);
});
