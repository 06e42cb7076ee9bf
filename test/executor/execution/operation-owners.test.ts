// Who may see, wait on and cancel an operation, against a real `larder executor` process with htpasswd users,
// once with the in-memory scheduler and once with the Redis one (a real redis-server): a stranger's
// GetOperation, WaitExecution and CancelOperation are NOT_FOUND; a caller's cancel of a merged operation ends
// only its own wait; the run stops when its last waiter cancels; an operator sees and stops any operation.
// Also: the priority range, anonymous callers told apart by address, and (Redis) a worker's result naming
// output blobs that are not in the CAS.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import bcrypt from 'bcryptjs';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerPlatform } from '../../../executor/reapi/platform.ts';
import type { CallOptions } from '../../../executor/grpc/client.ts';
import { RedisScheduler } from '../../../executor/scheduler/redis/redis-scheduler.ts';
import { createLogger } from '../../../shared/log.ts';
import {
  type Digest,
  type ExecuteResponse,
  ExecuteResponseSchema,
  ExecutionStage_Value,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { Operation } from '../../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { tempDir } from '../../helpers/edge-process.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import {
  type Clients,
  clientsFor,
  codeOf,
  digestOf,
  drain,
  type ExecutorProcess,
  startExecutorProcess,
} from '../helpers.ts';
import { ActionFixture, finalResponse, metadataOf } from './fixture.ts';

const SH = '/bin/sh';
const { NOT_FOUND, INVALID_ARGUMENT, CANCELLED, UNAVAILABLE } = grpc.status;

/** Every method of every client called with `authorization` (Basic for `user`), unless a call sets its own. */
function as(clients: Clients, user: string): Clients {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Basic ${Buffer.from(`${user}:${user}-password`).toString('base64')}`);
  const wrap = <T extends object>(client: T): T =>
    new Proxy(client, {
      get: (target, key) => {
        const method = (target as Record<string | symbol, unknown>)[key];
        if (typeof method !== 'function' || key === 'close') return method;
        return (request: unknown, options?: CallOptions) => method.call(target, request, { metadata, ...options });
      },
    });
  return {
    ...clients,
    cas: wrap(clients.cas),
    ac: wrap(clients.ac),
    capabilities: wrap(clients.capabilities),
    execution: wrap(clients.execution),
    operations: wrap(clients.operations),
  };
}

/** An Execute in progress: its operation's name once the first message came, and the rest of its stream. */
async function startExecute(clients: Clients, actionDigest: Digest) {
  const stream = clients.execution.execute({ actionDigest })[Symbol.asyncIterator]();
  const first = await stream.next();
  if (first.done) throw new Error('Execute ended without a message');
  const seen: Operation[] = [first.value];
  return {
    name: first.value.name,
    async end(): Promise<ExecuteResponse> {
      for (let next = await stream.next(); !next.done; next = await stream.next()) seen.push(next.value);
      return finalResponse(seen);
    },
  };
}

/** The stream of `name` followed until `stage` (or done), then left running; the stream's end is returned. */
async function waitForStage(clients: Clients, name: string, stage: ExecutionStage_Value) {
  const stream = clients.execution.waitExecution({ name })[Symbol.asyncIterator]();
  const seen: Operation[] = [];
  for (let next = await stream.next(); !next.done; next = await stream.next()) {
    seen.push(next.value);
    if (next.value.done || metadataOf(next.value).stage >= stage) break;
  }
  return {
    async end(): Promise<ExecuteResponse> {
      for (let next = await stream.next(); !next.done; next = await stream.next()) seen.push(next.value);
      return finalResponse(seen);
    },
  };
}

/** The htpasswd file and config of the suites: alice and bob may execute, carol may also operate. */
function writeUsers(dir: string): { htpasswd: string; config: string } {
  const htpasswd = join(dir, 'htpasswd');
  writeFileSync(
    htpasswd,
    ['alice', 'bob', 'carol'].map((user) => `${user}:${bcrypt.hashSync(`${user}-password`, 4)}\n`).join(''),
  );
  const config = join(dir, 'larder.json');
  writeFileSync(
    config,
    JSON.stringify({
      auth: { htpasswd: { everyone: ['read', 'write', 'execute'], users: { carol: ['operate'] } } },
    }),
  );
  return { htpasswd, config };
}

const variants = [{ queue: 'memory' }, { queue: 'redis' }] as const;

describe.each(variants)('operations belong to their callers ($queue scheduler)', ({ queue }) => {
  const dir = tempDir('larder-operation-owners-');
  let redis: TestRedis | null = null;
  let executor: ExecutorProcess;
  let clients: Clients;
  let alice: Clients;
  let bob: Clients;
  let carol: Clients;
  let fx: ActionFixture;

  beforeAll(async () => {
    const { htpasswd, config } = writeUsers(dir.path);
    const queueArgs: string[] = [];
    if (queue === 'redis') {
      if (!haveRedis()) return;
      redis = await startRedis();
      queueArgs.push('--queue', redis.url);
    }
    executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir.path, 'store')}`,
      '--htpasswd',
      htpasswd,
      '--config',
      config,
      '--concurrency',
      '4',
      ...queueArgs,
    ]);
    clients = clientsFor(`127.0.0.1:${executor.port}`);
    alice = as(clients, 'alice');
    bob = as(clients, 'bob');
    carol = as(clients, 'carol');
    fx = new ActionFixture(alice);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await executor?.stop();
    await redis?.close();
    dir.remove();
  });

  const sleeper = (seconds: number, what: string) =>
    fx.action({ salt: randomUUID(), command: { arguments: [SH, '-c', `sleep ${seconds}; echo ${what}`] } });

  it("a stranger's GetOperation, WaitExecution and CancelOperation are NOT_FOUND, as for a name that never existed", async () => {
    if (queue === 'redis' && redis === null) return;
    const run = await startExecute(alice, await sleeper(2, 'mine'));
    const unknown = `operations/${randomUUID()}`;
    const refusals = async (name: string) => [
      await codeOf(bob.operations.getOperation({ name })),
      await codeOf(drain(bob.execution.waitExecution({ name }))),
      await codeOf(bob.operations.cancelOperation({ name })),
    ];
    const foreign = await refusals(run.name);
    const never = await refusals(unknown);
    expect(foreign.map((r) => r.code)).toEqual([NOT_FOUND, NOT_FOUND, NOT_FOUND]);
    // The same words as for a name nobody ever had: nothing tells a stranger that the operation exists.
    expect(foreign.map((r) => r.details.replaceAll(run.name, 'NAME'))).toEqual(
      never.map((r) => r.details.replaceAll(unknown, 'NAME')),
    );
    // The owner and an operator see it; the run was not cancelled.
    expect((await alice.operations.getOperation({ name: run.name })).name).toBe(run.name);
    expect((await carol.operations.getOperation({ name: run.name })).name).toBe(run.name);
    const response = await run.end();
    expect(response.status?.code ?? 0, response.status?.message).toBe(0);
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe('mine\n');
    expect((await alice.operations.getOperation({ name: run.name })).done).toBe(true);
    expect((await codeOf(bob.operations.getOperation({ name: run.name }))).code).toBe(NOT_FOUND);
  });

  it('two callers on one merged operation: one cancels and its stream ends CANCELLED; the other gets the result', async () => {
    if (queue === 'redis' && redis === null) return;
    const actionDigest = await sleeper(3, 'shared');
    const first = await startExecute(alice, actionDigest);
    const second = await startExecute(bob, actionDigest);
    expect(second.name).toBe(first.name);
    await bob.operations.cancelOperation({ name: second.name });
    const bobs = await second.end();
    expect(bobs.status?.code).toBe(CANCELLED);
    expect(bobs.result).toBeUndefined();
    // Bob cancelled his wait, not Alice's run; he sees it cancelled from now on.
    const bobSees = await bob.operations.getOperation({ name: first.name });
    expect(bobSees.done).toBe(true);
    const alices = await first.end();
    expect(alices.status?.code ?? 0, alices.status?.message).toBe(0);
    expect(alices.result?.exitCode).toBe(0);
    expect((await fx.read(alices.result!.stdoutDigest)).toString()).toBe('shared\n');
  });

  it('the run stops when its last waiter cancels; an operator follows it to the end', async () => {
    if (queue === 'redis' && redis === null) return;
    const actionDigest = await sleeper(120, 'never');
    const first = await startExecute(alice, actionDigest);
    const second = await startExecute(bob, actionDigest);
    expect(second.name).toBe(first.name);
    const watched = await waitForStage(carol, first.name, ExecutionStage_Value.EXECUTING);
    await bob.operations.cancelOperation({ name: first.name });
    expect((await second.end()).status?.code).toBe(CANCELLED);
    expect((await alice.operations.getOperation({ name: first.name })).done).toBe(false);
    await alice.operations.cancelOperation({ name: first.name });
    expect((await first.end()).status?.code).toBe(CANCELLED);
    // The run itself ended CANCELLED (the operator sees the operation's own result), long before 120 s.
    const ended = await watched.end();
    expect(ended.status?.code).toBe(CANCELLED);
    // A new Execute of the same action is a new operation, not a join of the cancelled one.
    const again = await startExecute(alice, actionDigest);
    expect(again.name).not.toBe(first.name);
    await alice.operations.cancelOperation({ name: again.name });
    expect((await again.end()).status?.code).toBe(CANCELLED);
  }, 60_000);

  it("an operator's cancel of an operation it does not wait on stops the run for every waiter", async () => {
    if (queue === 'redis' && redis === null) return;
    const run = await startExecute(alice, await sleeper(120, 'never'));
    await carol.operations.cancelOperation({ name: run.name });
    const response = await run.end();
    expect(response.status?.code).toBe(CANCELLED);
  }, 60_000);

  it('refuses a priority outside the advertised -1000..1000 with INVALID_ARGUMENT, and takes the bounds', async () => {
    if (queue === 'redis' && redis === null) return;
    const caps = await alice.capabilities.getCapabilities({});
    expect(caps.executionCapabilities?.executionPriorityCapabilities?.priorities).toEqual([
      expect.objectContaining({ minPriority: -1000, maxPriority: 1000 }),
    ]);
    const actionDigest = await fx.action({ salt: randomUUID(), command: { arguments: [SH, '-c', 'echo ok'] } });
    for (const priority of [2_000_000_000, -2_000_000_000, 1001, -1001]) {
      const refused = await codeOf(
        drain(alice.execution.execute({ actionDigest, skipCacheLookup: true, executionPolicy: { priority } })),
      );
      expect(refused.code, `priority ${priority}`).toBe(INVALID_ARGUMENT);
      expect(refused.details).toContain('-1000..1000');
    }
    for (const priority of [1000, -1000]) {
      const response = await fx.execute(actionDigest, { skipCacheLookup: true, executionPolicy: { priority } });
      expect(response.response.result?.exitCode, `priority ${priority}`).toBe(0);
    }
  });
});

describe('anonymous callers, without any authenticator', () => {
  let executor: ExecutorProcess;
  let overIPv4: Clients;
  let overIPv6: Clients;

  beforeAll(async () => {
    // Listening on [::] reaches the same server from 127.0.0.1 and from ::1: two addresses, two anonymous callers.
    executor = await startExecutorProcess(['--store', 'memory', '--listen', '[::]:0', '--allow-anonymous']);
    overIPv4 = clientsFor(`127.0.0.1:${executor.port}`);
    overIPv6 = clientsFor(`[::1]:${executor.port}`);
  });
  afterAll(async () => {
    overIPv4?.close();
    overIPv6?.close();
    await executor?.stop();
  });

  it('are told apart by their address: one cannot see or cancel the operation of another', async () => {
    const fx = new ActionFixture(overIPv4);
    const actionDigest = await fx.action({
      salt: randomUUID(),
      command: { arguments: [SH, '-c', 'sleep 2; echo v4'] },
    });
    const run = await startExecute(overIPv4, actionDigest);
    expect((await codeOf(overIPv6.operations.getOperation({ name: run.name }))).code).toBe(NOT_FOUND);
    expect((await codeOf(overIPv6.operations.cancelOperation({ name: run.name }))).code).toBe(NOT_FOUND);
    // The same address on another connection is the same caller (Bazel reconnects and calls WaitExecution).
    const again = clientsFor(`127.0.0.1:${executor.port}`);
    try {
      const waited = finalResponse(await drain(again.execution.waitExecution({ name: run.name })));
      expect(waited.result?.exitCode).toBe(0);
    } finally {
      again.close();
    }
    expect((await run.end()).result?.exitCode).toBe(0);
  });
});

describe.runIf(haveRedis())('a worker result that names blobs missing from the CAS (Redis)', () => {
  const dir = tempDir('larder-missing-outputs-');
  let redis: TestRedis;
  let executor: ExecutorProcess;
  let clients: Clients;
  let hostile: RedisScheduler;

  beforeAll(async () => {
    redis = await startRedis();
    // A frontend with no workers of its own: the test plays the worker, as any Redis client could.
    executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir.path, 'store')}`,
      '--workers',
      '0',
      '--queue',
      redis.url,
    ]);
    clients = clientsFor(`127.0.0.1:${executor.port}`);
    hostile = await RedisScheduler.open({ url: redis.url, log: createLogger('silent') });
  }, 60_000);
  afterAll(async () => {
    clients?.close();
    await hostile?.close();
    await executor?.stop();
    await redis?.close();
    dir.remove();
  });

  it('is answered with UNAVAILABLE (Bazel retries), never passed on', async () => {
    const slot = await hostile.join({ name: 'hostile', platform: workerPlatform(new Map(), ['local']) });
    const fx = new ActionFixture(clients);
    const actionDigest = await fx.action({ salt: randomUUID(), command: { arguments: ['/bin/true'] } });
    const present = (await fx.upload(Buffer.from('this one is stored')))[0]!;
    const absent = digestOf('never uploaded');
    const execution = fx.execute(actionDigest);
    const lease = await slot.take(new AbortController().signal);
    await lease.complete(
      create(ExecuteResponseSchema, {
        status: { code: 0 },
        result: {
          exitCode: 0,
          outputFiles: [
            { path: 'out/present', digest: present },
            { path: 'out/absent', digest: absent },
          ],
          stdoutDigest: present,
        },
      }),
    );
    const { response } = await execution;
    expect(response.status?.code).toBe(UNAVAILABLE);
    expect(response.status?.message).toContain('not in the CAS');
    expect(response.result).toBeUndefined();
    // GetOperation answers the same.
    const operation = await clients.operations.getOperation({ name: lease.job.operation });
    expect(operation.done).toBe(true);
    expect(finalResponse([operation]).status?.code).toBe(UNAVAILABLE);
    await slot.leave();
  });

  it('a result whose blobs are all there is passed on', async () => {
    const slot = await hostile.join({ name: 'honest', platform: workerPlatform(new Map(), ['local']) });
    const fx = new ActionFixture(clients);
    const actionDigest = await fx.action({ salt: randomUUID(), command: { arguments: ['/bin/true'] } });
    const present = (await fx.upload(Buffer.from('stored output')))[0]!;
    const execution = fx.execute(actionDigest);
    const lease = await slot.take(new AbortController().signal);
    await lease.complete(
      create(ExecuteResponseSchema, {
        status: { code: 0 },
        result: { exitCode: 0, outputFiles: [{ path: 'out', digest: present }], stdoutDigest: present },
      }),
    );
    const { response } = await execution;
    expect(response.status?.code ?? 0).toBe(0);
    expect(response.result?.outputFiles[0]?.digest?.hash).toBe(present.hash);
    await slot.leave();
  });
});
