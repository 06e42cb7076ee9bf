/**
 * How jobs, platforms and responses are spelled in Redis. Everything stored is plain text (JSON, protobuf as
 * base64), so `redis-cli` can show what a fleet is doing, and Lua scripts can read the few fields they route on.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import { type Digest, parseDigest, parseInstance } from '../../../shared/digest.ts';
import { LarderError } from '../../../shared/errors.ts';
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { ActionPlatform, RunnerKind, WorkerPlatform } from '../../reapi/platform.ts';
import type { ExecutionJob } from '../scheduler.ts';

interface StoredJob {
  instance: string;
  digest: [string, number];
  /** The Action's and the Command's bytes as the frontend read them from the CAS (verify-job.ts hashes them). */
  action: string;
  command: string;
  /** For people reading Redis (and workers before verify-job.ts): a worker derives the platform from the Action. */
  constraints: [string, string[]][];
  options: [string, string][];
  runner: RunnerKind;
  timeoutMs: number;
  priority: number;
  queuedAt: number;
}

/**
 * A claimed job as the queue spells it, nothing checked but its shape: whoever can write to Redis can queue one,
 * so a worker runs it only as verifyJob (verify-job.ts) turns it into an ExecutionJob.
 */
export interface QueuedJob {
  readonly operation: string;
  readonly instance: string;
  readonly actionDigest: Digest;
  readonly encoded: { readonly action: Uint8Array; readonly command: Uint8Array };
  readonly timeoutMs: number;
  readonly priority: number;
  readonly queuedAt: Date;
}

export function encodeJob(job: Omit<ExecutionJob, 'operation'>): string {
  const stored: StoredJob = {
    instance: job.instance,
    digest: [job.actionDigest.hash, job.actionDigest.sizeBytes],
    action: b64(job.encoded.action),
    command: b64(job.encoded.command),
    constraints: [...job.platform.constraints].map(([name, values]) => [name, [...values]]),
    options: [...job.platform.options],
    runner: job.platform.runner,
    timeoutMs: job.timeoutMs,
    priority: job.priority,
    queuedAt: job.queuedAt.getTime(),
  };
  return JSON.stringify(stored);
}

/** Reads a claimed job's fields; one a frontend would not have written is INVALID_ARGUMENT. */
export function decodeJob(operation: string, text: string): QueuedJob {
  let stored: Partial<StoredJob>;
  try {
    stored = JSON.parse(text) as Partial<StoredJob>;
  } catch (err) {
    throw new LarderError('invalid_argument', `the queued job is not JSON: ${(err as Error).message}`);
  }
  const { instance, digest, action, command, timeoutMs, priority, queuedAt } = stored ?? {};
  const numbers = [timeoutMs, priority, queuedAt];
  if (
    typeof instance !== 'string' ||
    !Array.isArray(digest) ||
    typeof action !== 'string' ||
    typeof command !== 'string' ||
    !numbers.every((n) => typeof n === 'number' && Number.isFinite(n)) ||
    timeoutMs! <= 0
  )
    throw new LarderError('invalid_argument', 'the queued job lacks a field a frontend writes, or has it malformed');
  return {
    operation,
    instance: parseInstance(instance),
    actionDigest: parseDigest(String(digest[0]), digest[1] as number),
    encoded: { action: unb64(action), command: unb64(command) },
    timeoutMs: timeoutMs!,
    priority: priority!,
    queuedAt: new Date(queuedAt!),
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

/**
 * The key a persistent worker process serves jobs by, for affinity (the client's persistentWorkerKey and cache
 * silo, as executor/worker/persistent keys its pool), or '' for a job that uses none. Hashed: it names Redis keys.
 */
export function affinityKey(platform: ActionPlatform): string {
  const key = platform.options.get('persistentWorkerKey') ?? '';
  return key === '' ? '' : shortHash(`${key}\u0000${platform.options.get('cache-silo-key') ?? ''}`);
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
