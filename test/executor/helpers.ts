/** Shared pieces of the executor suites: a server on a free port, typed clients, digests, raw calls. */
import type * as grpc from '@grpc/grpc-js';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServiceClient, createClient } from '../../executor/grpc/client.ts';
import { type RunningExecutor, startExecutor } from '../../executor/start.ts';
import type { WorkerPool } from '../../executor/worker/in-process.ts';
import { parseExecutorConfig } from '../../executor/config/executor-options.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
  Execution,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Operations } from '../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { ByteStream } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { Health } from '../../shared/proto/gen/grpc/health/v1/health_pb.ts';
import { REPO_ROOT } from '../helpers/tools.ts';

export interface Clients {
  capabilities: ServiceClient<typeof Capabilities>;
  cas: ServiceClient<typeof ContentAddressableStorage>;
  ac: ServiceClient<typeof ActionCache>;
  bytestream: ServiceClient<typeof ByteStream>;
  health: ServiceClient<typeof Health>;
  execution: ServiceClient<typeof Execution>;
  operations: ServiceClient<typeof Operations>;
  close(): void;
}

export function clientsFor(
  address: string,
  credentials?: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
): Clients {
  const make = <S extends Parameters<typeof createClient>[0]>(service: S) =>
    createClient(service, address, credentials, options);
  const clients = {
    capabilities: make(Capabilities),
    cas: make(ContentAddressableStorage),
    ac: make(ActionCache),
    bytestream: make(ByteStream),
    health: make(Health),
    execution: make(Execution),
    operations: make(Operations),
  };
  return {
    ...clients,
    close: () => {
      for (const c of Object.values(clients)) c.close();
    },
  };
}

export interface TestServer {
  executor: RunningExecutor;
  address: string;
  clients: Clients;
  dir: string;
  stop(): Promise<void>;
}

/**
 * What a work folder's actions/ holds besides spare folders made ahead (action-folders.ts: an empty folder with an
 * empty `root`, or one half made): anything an action left, as paths relative to actions/.
 */
export function actionLeftovers(workDir: string): string[] {
  const actions = join(workDir, 'actions');
  return readdirSync(actions).flatMap((folder) => {
    const inFolder = readdirSync(join(actions, folder)).filter((entry) => entry !== 'root');
    const root = join(actions, folder, 'root');
    const inRoot = existsSync(root) ? readdirSync(root).map((entry) => `root/${entry}`) : [];
    return [...inFolder, ...inRoot].map((entry) => `${folder}/${entry}`);
  });
}

/**
 * A fresh temporary folder that actions running as another user (nobody, when the tests run as root) can
 * enter: mkdtemp makes 0700 folders, which would keep them out of a work folder inside.
 */
export function reachableTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** An in-process executor on 127.0.0.1:0 over a fresh disk store (or the given store), with clients. */
export async function startTestServer(
  options: { args?: string[]; store?: BlobStore; pools?: WorkerPool[]; keepaliveMs?: number } = {},
): Promise<TestServer> {
  const dir = reachableTempDir('larder-executor-test-');
  const args = [
    '--listen',
    '127.0.0.1:0',
    '--store',
    `disk:${dir}/store`,
    '--work-dir',
    `${dir}/work`,
    '--log-level',
    'silent',
    ...(options.args ?? []),
  ];
  const config = parseExecutorConfig(args, {});
  const executor = await startExecutor(config, {
    store: options.store,
    announce: false,
    pools: options.pools,
    keepaliveMs: options.keepaliveMs,
  });
  const address = `127.0.0.1:${executor.port}`;
  const clients = clientsFor(address);
  return {
    executor,
    address,
    clients,
    dir,
    async stop() {
      clients.close();
      await executor.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function digestOf(data: Uint8Array | string) {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  return { hash: sha256(bytes), sizeBytes: BigInt(bytes.byteLength) };
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function randomBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The gRPC status code a promise rejects with (fails the test if it resolves). */
export async function codeOf(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error('expected the call to fail');
}

/** Reads a server stream to its end, returning every message (or the status it failed with). */
export async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/** The WriteRequests of a ByteStream upload of `data` to `resourceName`, in messages of 1 MiB, the last finishing it. */
export function* writeRequests(resourceName: string, data: Uint8Array) {
  const MiB = 1024 * 1024;
  for (let offset = 0; offset < data.byteLength; offset += MiB)
    yield {
      resourceName: offset === 0 ? resourceName : '',
      writeOffset: BigInt(offset),
      data: data.subarray(offset, offset + MiB),
      finishWrite: offset + MiB >= data.byteLength,
    };
}

export async function readAll(
  clients: Clients,
  resourceName: string,
  extra: { readOffset?: bigint; readLimit?: bigint } = {},
): Promise<Buffer> {
  const parts = await drain(clients.bytestream.read({ resourceName, ...extra }));
  return Buffer.concat(parts.map((p) => p.data));
}

export interface ExecutorProcess {
  url: string;
  port: number;
  pid: number;
  output: () => string;
  stop(): Promise<void>;
}

/**
 * A real `larder executor` process (bin/larder.js), stopped by PID; `user` runs it as another (unprivileged) user;
 * `wrapper` is a command line it is started through (it must exec the command it is given last).
 */
export async function startExecutorProcess(
  args: string[],
  env: Record<string, string> = {},
  user?: { uid: number; gid: number },
  wrapper: string[] = [],
): Promise<ExecutorProcess> {
  // Each process stages actions in a folder of its own: a shared one would be emptied by the next to start.
  const workDir = args.includes('--work-dir') ? null : reachableTempDir('larder-executor-work-');
  if (workDir !== null && user !== undefined) chownSync(workDir, user.uid, user.gid);
  const workArgs = workDir === null ? [] : ['--work-dir', join(workDir, 'work')];
  const [command, ...commandArgs] = [
    ...wrapper,
    process.execPath,
    join(REPO_ROOT, 'bin/larder.js'),
    'executor',
    '--listen',
    '127.0.0.1:0',
    '--log-level',
    'warn',
    ...workArgs,
    ...args,
  ];
  const child: ChildProcess = spawn(command!, commandArgs, {
    cwd: REPO_ROOT,
    // Readable text logs, which the suites match; the JSON default for pipes has a suite of its own (test/log.test.ts).
    env: { ...process.env, LARDER_LOG_FORMAT: 'text', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...user,
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(child.pid!, 'SIGKILL');
      reject(new Error(`executor did not start in 30 s:\n${output}`));
    }, 30_000);
    const check = () => {
      const match = /larder executor listening on (grpcs?:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`executor exited with ${code}:\n${output}`));
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    pid: child.pid!,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid!, 'SIGTERM');
        const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 8_000);
        await exited;
        clearTimeout(timer);
      }
      if (workDir !== null) rmSync(workDir, { recursive: true, force: true });
    },
  };
}
