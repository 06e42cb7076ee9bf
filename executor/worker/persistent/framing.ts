/**
 * The two wire formats of Bazel's worker protocol on a worker's stdin and stdout: length-delimited protobuf
 * (each message preceded by its varint length; @bufbuild/protobuf's size-delimited helpers) and JSON (one object
 * per message, camelCase fields; Bazel 4 writes no newline between objects, and workers may or may not write one).
 * Reading is bounded and linear in the bytes read: each byte is copied once into a ByteQueue and looked at once by
 * the JSON scanner; a worker that writes more than MAX_RESPONSE_BYTES for one response, or bytes that are not a
 * response, is broken.
 */
import { fromBinary, fromJson, type JsonValue, toJsonString } from '@bufbuild/protobuf';
import { sizeDelimitedEncode, sizeDelimitedPeek } from '@bufbuild/protobuf/wire';
import { LarderError } from '../../../shared/errors.ts';
import {
  type WorkRequest,
  WorkRequestSchema,
  type WorkResponse,
  WorkResponseSchema,
} from '../../../shared/proto/gen/blaze/worker/worker_protocol_pb.ts';
import { ByteQueue } from './byte-queue.ts';

export type WorkerProtocol = 'proto' | 'json';

export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** The longest varint a uint32 length takes; longer is malformed. */
const MAX_LENGTH_PREFIX = 5;

export function encodeRequest(protocol: WorkerProtocol, request: WorkRequest): Uint8Array {
  if (protocol === 'json') return new TextEncoder().encode(toJsonString(WorkRequestSchema, request));
  return sizeDelimitedEncode(WorkRequestSchema, request);
}

/**
 * Accumulates a worker's stdout and hands out whole responses. `push` returns the responses completed by the
 * chunk; it throws (LarderError 'invalid_argument') on garbage or an over-size response.
 */
export class ResponseReader {
  /** The bytes of the response being read (and, for protobuf, of those after it in the same chunk). */
  private readonly pending = new ByteQueue(MAX_RESPONSE_BYTES + MAX_LENGTH_PREFIX);
  /** Protobuf: the length prefix of the response being read, once it has all arrived. */
  private announced: { offset: number; size: number } | null = null;
  /** JSON: where the response being read ends, found as its bytes arrive. */
  private readonly json = new JsonObjectScanner();

  constructor(private readonly protocol: WorkerProtocol) {}

  push(chunk: Uint8Array): WorkResponse[] {
    const responses = this.protocol === 'json' ? this.pushJson(chunk) : this.pushProto(chunk);
    if (this.pending.length > MAX_RESPONSE_BYTES)
      throw new LarderError(
        'invalid_argument',
        `the worker wrote over ${MAX_RESPONSE_BYTES} bytes without completing a response`,
      );
    return responses;
  }

  private pushProto(chunk: Uint8Array): WorkResponse[] {
    this.pending.append(chunk);
    const responses: WorkResponse[] = [];
    for (;;) {
      if (this.announced === null) {
        this.announced = announcedLength(this.pending.bytes());
        if (this.announced === null) return responses;
        this.pending.reserve(this.announced.offset + this.announced.size);
      }
      const { offset, size } = this.announced;
      if (this.pending.length < offset + size) return responses;
      this.announced = null;
      // Decoded before the bytes are consumed: the view is only good until the next append.
      responses.push(decodeBinary(this.pending.bytes().subarray(offset, offset + size)));
      this.pending.consume(offset + size);
    }
  }

  private pushJson(chunk: Uint8Array): WorkResponse[] {
    const responses: WorkResponse[] = [];
    let from = 0;
    for (;;) {
      const start = this.json.skipSpace(chunk, from);
      const end = this.json.endOfObject(chunk, start);
      if (end < 0) {
        this.pending.append(start === 0 ? chunk : chunk.subarray(start));
        return responses;
      }
      this.pending.append(chunk.subarray(start, end));
      responses.push(decodeJson(this.pending.bytes()));
      this.pending.consume(this.pending.length);
      from = end;
    }
  }
}

function decodeBinary(body: Uint8Array): WorkResponse {
  try {
    return fromBinary(WorkResponseSchema, body);
  } catch (err) {
    throw new LarderError(
      'invalid_argument',
      `the worker wrote something that is not a WorkResponse: ${(err as Error).message}`,
    );
  }
}

function decodeJson(bytes: Uint8Array): WorkResponse {
  try {
    const json = JSON.parse(new TextDecoder().decode(bytes)) as JsonValue;
    return fromJson(WorkResponseSchema, json, { ignoreUnknownFields: true });
  } catch (err) {
    throw new LarderError(
      'invalid_argument',
      `the worker wrote something that is not a JSON WorkResponse: ${(err as Error).message}`,
    );
  }
}

/** The length prefix at the start of `bytes`, or null until all of it has arrived; over-size or malformed throws. */
function announcedLength(bytes: Uint8Array): { offset: number; size: number } | null {
  if (bytes.byteLength >= MAX_LENGTH_PREFIX && bytes.subarray(0, MAX_LENGTH_PREFIX).every((b) => b >= 0x80))
    throw new LarderError('invalid_argument', 'the worker wrote a malformed length prefix');
  const peeked = sizeDelimitedPeek(bytes);
  if (peeked.eof) return null;
  // A fifth byte carries bits 28 to 34; the helper reads a uint32, so 4 GiB and more would come back wrapped.
  const atLeast4GiB = peeked.offset === MAX_LENGTH_PREFIX && (bytes[MAX_LENGTH_PREFIX - 1]! & 0x70) !== 0;
  if (atLeast4GiB || peeked.size > MAX_RESPONSE_BYTES)
    throw new LarderError(
      'invalid_argument',
      `the worker announced a ${atLeast4GiB ? '4 GiB or larger' : `${peeked.size}-byte`} response, over ${MAX_RESPONSE_BYTES}`,
    );
  return { offset: peeked.offset, size: peeked.size };
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d, 0x0b, 0x0c]);

/**
 * Finds where each JSON object ends in bytes that arrive a chunk at a time, remembering its state between chunks,
 * so each byte is looked at once. It works on UTF-8 bytes: braces, quotes and backslashes are ASCII, never part of
 * a multi-byte character, so an object's end is found without decoding it first.
 */
class JsonObjectScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;

  /**
   * Where the object's bytes in `chunk` begin, from `from` on: whitespace between objects is skipped, and anything
   * else than an object refused. Inside an object, `from`.
   */
  skipSpace(chunk: Uint8Array, from: number): number {
    if (this.depth > 0) return from;
    const length = chunk.length;
    let i = from;
    while (i < length && SPACE.has(chunk[i]!)) i++;
    if (i < length && chunk[i] !== OPEN_BRACE) {
      const text = new TextDecoder().decode(chunk.subarray(i, i + 320)).slice(0, 80);
      throw new LarderError(
        'invalid_argument',
        `the worker wrote something that is not a JSON WorkResponse: ${JSON.stringify(text)}`,
      );
    }
    return i;
  }

  /** Index in `chunk` just past the object's last byte, or -1 when the object goes on in the next chunk. */
  endOfObject(chunk: Uint8Array, from: number): number {
    // Locals in the loop, written back once: this runs for every byte a worker writes.
    let { depth, inString, escaped } = this;
    let end = -1;
    // The length read once: a typed array's byteLength in the loop's condition costs more than the loop's body.
    const length = chunk.length;
    for (let i = from; i < length; i++) {
      const c = chunk[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) inString = false;
      } else if (c === QUOTE) inString = true;
      else if (c === OPEN_BRACE) depth++;
      else if (c === CLOSE_BRACE && --depth === 0) {
        end = i + 1;
        break;
      }
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    return end;
  }
}
