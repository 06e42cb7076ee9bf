/**
 * How jobs, platforms and responses are spelled in Redis. Everything stored is plain text (JSON, protobuf as
 * base64), so `redis-cli` can show what a fleet is doing, and Lua scripts can read the few fields they route on.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import type { Digest } from '../../../shared/digest.ts';
import {
  ActionSchema,
  CommandSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { ActionPlatform, RunnerKind, WorkerPlatform } from '../../execution/platform.ts';
import type { ExecutionJob } from '../scheduler.ts';

interface StoredJob {
  instance: string;
  digest: [string, number];
  action: string;
  command: string;
  constraints: [string, string[]][];
  options: [string, string][];
  runner: RunnerKind;
  timeoutMs: number;
  priority: number;
  queuedAt: number;
}

export function encodeJob(job: Omit<ExecutionJob, 'operation'>): string {
  const stored: StoredJob = {
    instance: job.instance,
    digest: [job.actionDigest.hash, job.actionDigest.sizeBytes],
    action: b64(toBinary(ActionSchema, job.action)),
    command: b64(toBinary(CommandSchema, job.command)),
    constraints: [...job.platform.constraints].map(([name, values]) => [name, [...values]]),
    options: [...job.platform.options],
    runner: job.platform.runner,
    timeoutMs: job.timeoutMs,
    priority: job.priority,
    queuedAt: job.queuedAt.getTime(),
  };
  return JSON.stringify(stored);
}

export function decodeJob(operation: string, text: string): ExecutionJob {
  const stored = JSON.parse(text) as StoredJob;
  return {
    operation,
    instance: stored.instance,
    actionDigest: { hash: stored.digest[0], sizeBytes: stored.digest[1] },
    action: fromBinary(ActionSchema, unb64(stored.action)),
    command: fromBinary(CommandSchema, unb64(stored.command)),
    platform: { constraints: new Map(stored.constraints), options: new Map(stored.options), runner: stored.runner },
    timeoutMs: stored.timeoutMs,
    priority: stored.priority,
    queuedAt: new Date(stored.queuedAt),
  };
}

/**
 * What a platform queue is keyed by, and what the claim script matches workers against: the action's routing
 * constraints and runner kind (runner options never route). `{"c":{name:[values]},"r":runner}`.
 */
export function queueSpec(platform: ActionPlatform): { key: string; spec: string } {
  const constraints = Object.fromEntries(
    [...platform.constraints].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, v]) => [n, [...v].sort()]),
  );
  const spec = JSON.stringify({ c: constraints, r: platform.runner });
  return { key: shortHash(spec), spec };
}

/** A worker's offer as the claim script reads it: `{"p":{name:[values]},"r":[runners]}`, and its wake-list key. */
export function workerSpec(platform: WorkerPlatform): { key: string; spec: string } {
  const properties = Object.fromEntries(
    [...platform.properties].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, v]) => [n, [...v].sort()]),
  );
  const spec = JSON.stringify({ p: properties, r: [...platform.runners].sort() });
  return { key: shortHash(spec), spec };
}

export function decodeWorkerSpec(spec: string): WorkerPlatform {
  const parsed = JSON.parse(spec) as { p: Record<string, string[]>; r: RunnerKind[] };
  return { properties: new Map(Object.entries(parsed.p).map(([n, v]) => [n, new Set(v)])), runners: new Set(parsed.r) };
}

export function encodeResponse(response: ExecuteResponse): string {
  return b64(toBinary(ExecuteResponseSchema, response));
}

export function decodeResponse(text: string): ExecuteResponse {
  return fromBinary(ExecuteResponseSchema, unb64(text));
}

export function statusResponse(code: number, message: string): string {
  return encodeResponse(create(ExecuteResponseSchema, { status: { code, message } }));
}

export function formatDigest(digest: Digest): string {
  return `${digest.hash}/${digest.sizeBytes}`;
}

export function parseStoredDigest(text: string): Digest {
  const [hash, size] = text.split('/');
  return { hash: hash!, sizeBytes: Number(size) };
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 20);
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function unb64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}
