// Issue 17, found in review: someone who can write to the fleet's Redis (but not to the CAS or the action cache)
// queues jobs of their own making under a victim action's digest, to have a worker cache a result of their
// choosing for every client. All real processes: redis-server, a frontend (`larder executor --workers 0 --queue
// redis://…`) and one `larder worker`. The attacker writes a job as the queue spells it, with the submit script
// (what a frontend would send; Redis lets any writer run it). Each forged job must be refused by the worker
// before anything runs, with a status saying why and a warning in its log, and nothing cached; the victim action
// itself, executed honestly afterwards, still gets its own result.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { SCRIPTS } from '../../../executor/scheduler/redis/scripts.ts';
import {
  ActionSchema,
  CommandSchema,
  type Digest,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { type Clients, clientsFor, digestOf, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

const P = 'larder:';
/** A platform queue as the claim script reads it: no constraints, the local runner (every worker drains it). */
const LOCAL_QUEUE_SPEC = '{"c":{},"r":"local"}';

describe.runIf(haveRedis())('a fleet refuses jobs forged in Redis under another action digest', () => {
  const dir = reachableTempDir('larder-fleet-forged-');
  let redis: TestRedis;
  let raw: Redis;
  let events: Redis;
  let frontend: ExecutorProcess;
  let worker: WorkerProcess;
  let clients: Clients;
  let fixture: ActionFixture;

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
    events = new Redis(redis.url);
    frontend = await startFrontend({ redis: redis.url, store: join(dir, 'store') });
    worker = await startWorker({ redis: redis.url, frontend: frontend.url });
    clients = clientsFor(`127.0.0.1:${frontend.port}`);
    fixture = new ActionFixture(clients);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await worker?.stop();
    await frontend?.stop();
    raw?.disconnect();
    events?.disconnect();
    await redis?.close();
  }, 60_000);

  /** The victim: an honest action, uploaded as a client would; its bytes read back from the CAS, as anyone can. */
  async function victim(script: string, platform?: Record<string, string>) {
    const digest = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', script] },
      platform,
      salt: randomUUID(),
    });
    const actionBytes = await fixture.read(digest);
    const action = fromBinary(ActionSchema, actionBytes);
    const commandBytes = await fixture.read(action.commandDigest);
    return { digest, actionBytes, commandBytes };
  }

  /**
   * Queues a job of the attacker's making as the queue spells one, routed to the no-constraints local queue
   * whatever its Action asks for, and waits (on the operation's pub/sub channel) for a worker to finish it.
   */
  async function forge(job: { digest: Digest; action: Uint8Array; command: Uint8Array }): Promise<ExecuteResponse> {
    const name = `operations/${randomUUID()}`;
    const stored = {
      instance: '',
      digest: [job.digest.hash, Number(job.digest.sizeBytes)],
      action: Buffer.from(job.action).toString('base64'),
      command: Buffer.from(job.command).toString('base64'),
      constraints: [],
      options: [],
      runner: 'local',
      timeoutMs: 60_000,
      priority: 0,
      queuedAt: Date.now(),
    };
    const queueKey = 'forged-local';
    expect(await raw.hlen(`${P}workers`)).toBeGreaterThan(0);
    const finished = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`forged ${name} not finished in 60 s`)), 60_000);
      const check = async () => {
        if ((await raw.hget(`${P}op:${name}`, 'done')) !== '1') return;
        clearTimeout(timer);
        events.off('message', onMessage);
        resolve();
      };
      const onMessage = (channel: string) => {
        if (channel === `${P}ev:${name}`) void check().catch(reject);
      };
      events.on('message', onMessage);
    });
    await events.subscribe(`${P}ev:${name}`);
    await raw.eval(
      SCRIPTS.submit.lua,
      0,
      P,
      name,
      JSON.stringify(stored),
      `${job.digest.hash}/${job.digest.sizeBytes}`,
      '',
      queueKey,
      LOCAL_QUEUE_SPEC,
      0,
      3_600_000,
      '',
      'attacker',
      1000,
      '', // no affinity key
      15_000, // heartbeatMs: the workers' entries are fresh
    );
    await finished;
    await events.unsubscribe(`${P}ev:${name}`);
    const response = await raw.hget(`${P}op:${name}`, 'response');
    return fromBinary(ExecuteResponseSchema, Buffer.from(response!, 'base64'));
  }

  /** What a client gets from the action cache for `digest`: the stdout of the cached result, or its status code. */
  async function cached(digest: Digest): Promise<string | number> {
    const result = await clients.ac
      .getActionResult({ actionDigest: digest })
      .catch((err: { code: number }) => err.code);
    return typeof result === 'number' ? result : (await fixture.read(result.stdoutDigest)).toString();
  }

  /** The victim executed honestly through the frontend afterwards: its own result, cached under its digest. */
  async function honestly(digest: Digest, stdout: string): Promise<void> {
    const { response } = await fixture.execute(digest);
    expect(response.status?.code ?? 0, response.status?.message).toBe(0);
    expect(response.cachedResult).toBe(false);
    expect((await fixture.read(response.result!.stdoutDigest)).toString()).toBe(stdout);
    expect(await cached(digest)).toBe(stdout);
  }

  it("the victim's Action with the attacker's Command: refused (INVALID_ARGUMENT), nothing run or cached", async () => {
    const target = await victim('echo genuine');
    const evil = toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/sh', '-c', 'echo poisoned'] }));
    const response = await forge({ digest: target.digest, action: target.actionBytes, command: evil });

    expect(await cached(target.digest)).toBe(Code.NOT_FOUND);
    expect(response.status?.code, response.status?.message).toBe(Code.INVALID_ARGUMENT);
    expect(response.status?.message).toMatch(/Command .*does not hash to the Action's command_digest/);
    expect(response.result).toBeUndefined();
    expect(worker.output()).toMatch(/refused a queued job that does not match its action digest.*Command/);
    await honestly(target.digest, 'genuine\n');
  }, 60_000);

  it("the attacker's own Action and Command under the victim's digest: refused, nothing cached", async () => {
    const target = await victim('echo genuine-2');
    const command = toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/sh', '-c', 'echo poisoned'] }));
    const commandDigest = digestOf(command);
    const action = toBinary(
      ActionSchema,
      create(ActionSchema, { commandDigest, inputRootDigest: digestOf(new Uint8Array()) }),
    );
    const response = await forge({ digest: target.digest, action, command });

    expect(await cached(target.digest)).toBe(Code.NOT_FOUND);
    expect(response.status?.code, response.status?.message).toBe(Code.INVALID_ARGUMENT);
    expect(response.status?.message).toMatch(/Action .*does not hash to the action digest/);
    expect(response.result).toBeUndefined();
    await honestly(target.digest, 'genuine-2\n');
  }, 60_000);

  it('a genuine Action queued for a platform it does not ask for: refused (FAILED_PRECONDITION), not cached', async () => {
    // The Action asks for arm64; the queue entry says "no constraints", so this amd64 worker claims it.
    const target = await victim('uname -m', { Arch: 'arm64' });
    const response = await forge({ digest: target.digest, action: target.actionBytes, command: target.commandBytes });

    expect(await cached(target.digest)).toBe(Code.NOT_FOUND);
    expect(response.status?.code, response.status?.message).toBe(Code.FAILED_PRECONDITION);
    expect(response.status?.message).toMatch(/Arch=arm64/);
    expect(response.result).toBeUndefined();
  }, 60_000);

  it('a genuine job queued by the attacker runs as the Action says (its digests hold)', async () => {
    const target = await victim('echo replayed');
    const response = await forge({ digest: target.digest, action: target.actionBytes, command: target.commandBytes });
    expect(response.status?.code ?? 0, response.status?.message).toBe(0);
    expect(await cached(target.digest)).toBe('replayed\n');
  }, 60_000);
});
