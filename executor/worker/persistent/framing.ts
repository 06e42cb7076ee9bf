/**
 * The two wire formats of Bazel's worker protocol on a worker's stdin and stdout: length-delimited protobuf
 * (each message preceded by its varint length) and JSON (one object per message, camelCase fields; Bazel 4
 * writes no newline between objects, and workers may or may not write one). Reading is bounded: a worker that
 * writes more than MAX_RESPONSE_BYTES for one response, or bytes that are not a response, is broken.
 */
import { fromBinary, fromJson, toBinary, toJsonString, type JsonValue } from '@bufbuild/protobuf';
import { LarderError } from '../../../shared/errors.ts';
import {
  type WorkRequest,
  WorkRequestSchema,
  type WorkResponse,
  WorkResponseSchema,
} from '../../../shared/proto/gen/blaze/worker/worker_protocol_pb.ts';

export type WorkerProtocol = 'proto' | 'json';

export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export function encodeRequest(protocol: WorkerProtocol, request: WorkRequest): Uint8Array {
  if (protocol === 'json') return new TextEncoder().encode(toJsonString(WorkRequestSchema, request));
  const body = toBinary(WorkRequestSchema, request);
  return concat(varint(body.byteLength), body);
}

/**
 * Accumulates a worker's stdout and hands out whole responses. `push` returns the responses completed by the
 * chunk; it throws (LarderError 'invalid_argument') on garbage or an over-size response.
 */
export class ResponseReader {
  private buffer: Uint8Array = new Uint8Array(0);

  constructor(private readonly protocol: WorkerProtocol) {}

  push(chunk: Uint8Array): WorkResponse[] {
    this.buffer = this.buffer.byteLength === 0 ? chunk : concat(this.buffer, chunk);
    const responses: WorkResponse[] = [];
    for (let next = this.next(); next !== null; next = this.next()) responses.push(next);
    if (this.buffer.byteLength > MAX_RESPONSE_BYTES)
      throw new LarderError(
        'invalid_argument',
        `the worker wrote over ${MAX_RESPONSE_BYTES} bytes without completing a response`,
      );
    return responses;
  }

  private next(): WorkResponse | null {
    return this.protocol === 'json' ? this.nextJson() : this.nextProto();
  }

  private nextProto(): WorkResponse | null {
    let length = 0;
    let shift = 0;
    let at = 0;
    for (;;) {
      if (at >= this.buffer.byteLength) return null;
      const byte = this.buffer[at++]!;
      length += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
      if (shift > 35) throw new LarderError('invalid_argument', 'the worker wrote a malformed length prefix');
    }
    if (length > MAX_RESPONSE_BYTES)
      throw new LarderError(
        'invalid_argument',
        `the worker announced a ${length}-byte response, over ${MAX_RESPONSE_BYTES}`,
      );
    if (this.buffer.byteLength < at + length) return null;
    const body = this.buffer.subarray(at, at + length);
    this.buffer = this.buffer.subarray(at + length);
    try {
      return fromBinary(WorkResponseSchema, body);
    } catch (err) {
      throw new LarderError(
        'invalid_argument',
        `the worker wrote something that is not a WorkResponse: ${(err as Error).message}`,
      );
    }
  }

  private nextJson(): WorkResponse | null {
    const text = new TextDecoder().decode(this.buffer);
    const start = text.search(/\S/);
    if (start < 0) {
      this.buffer = new Uint8Array(0);
      return null;
    }
    if (text[start] !== '{')
      throw new LarderError(
        'invalid_argument',
        `the worker wrote something that is not a JSON WorkResponse: ${JSON.stringify(text.slice(start, start + 80))}`,
      );
    const end = endOfJsonObject(text, start);
    if (end < 0) return null;
    this.buffer = new TextEncoder().encode(text.slice(end));
    try {
      return fromJson(WorkResponseSchema, JSON.parse(text.slice(start, end)) as JsonValue, {
        ignoreUnknownFields: true,
      });
    } catch (err) {
      throw new LarderError(
        'invalid_argument',
        `the worker wrote something that is not a JSON WorkResponse: ${(err as Error).message}`,
      );
    }
  }
}

/** Index just past the JSON object that starts at `start`, or -1 while it is incomplete. */
function endOfJsonObject(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return Uint8Array.from(bytes);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
