/**
 * Lets a handler hand a large received message's memory back to grpc-js, so the next message of its call is decoded
 * into it instead of into a fresh buffer.
 *
 * grpc-js collects each received message's pieces (HTTP/2 DATA frames) and joins them into a new buffer of the
 * message's size. For ByteStream Write that is a fresh megabyte per message, and on V8 every 64 MiB or so of such
 * allocations starts a full mark-compact of the executor's heap: copying and collecting took more of a 64 MiB Write's
 * CPU than hashing it (issue 21). So grpc-js's message decoder is wrapped once: a message of LENDABLE_BYTES or more is
 * copied into a buffer of its own, taken from the ones its call's handler handed back (`handBack`) when one is big
 * enough; smaller ones are joined as grpc-js joins them. A message that is never handed back is garbage as before, so
 * a handler that keeps its bytes (a store holding them in memory) needs to do nothing.
 *
 * It reaches into grpc-js's StreamDecoder (1.14, stream-decoder.js). If a later grpc-js moves it, nothing breaks:
 * messages are decoded as before, and this returns false (test/executor/grpc/lent-frames.test.ts checks that a
 * handed-back buffer receives the next message).
 */
import { wrapGrpcJsMethod } from './grpc-js-internals.ts';

/** Messages smaller than this are joined as grpc-js joins them: lending pays only for large ones. */
export const LENDABLE_BYTES = 64 * 1024;

/** Buffers a call keeps for its next messages: one being decoded and one decoded ahead (adapt.ts READ_AHEAD is 1). */
const KEPT_PER_CALL = 2;

const PAGE_BYTES = 4096;

/** gRPC's message prefix: a compressed flag and a 4-byte big-endian length. */
const PREFIX_BYTES = 5;

/** One call's decoder: grpc-js's StreamDecoder state machine, writing each large message straight into a lent buffer. */
class LendingDecoder {
  readonly #maxMessageBytes: number;
  readonly #prefix = Buffer.alloc(PREFIX_BYTES);
  #prefixHave = 0;
  /** The frame (prefix and message) being filled, and how much of it is. */
  #frame: Buffer | null = null;
  #frameHave = 0;
  /** Buffers handed back, for the next large messages. */
  readonly #kept: Buffer[] = [];

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  /** What StreamDecoder.write does: the complete frames in `data` (with what came before), prefix included. */
  write(data: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let at = 0;
    while (at < data.length) {
      if (this.#frame === null) {
        const take = Math.min(PREFIX_BYTES - this.#prefixHave, data.length - at);
        data.copy(this.#prefix, this.#prefixHave, at, at + take);
        this.#prefixHave += take;
        at += take;
        if (this.#prefixHave < PREFIX_BYTES) break;
        this.#prefixHave = 0;
        const size = this.#prefix.readUInt32BE(1);
        // grpc-js's words: its server turns this error into RESOURCE_EXHAUSTED with this message.
        if (this.#maxMessageBytes !== -1 && size > this.#maxMessageBytes)
          throw new Error(`Received message larger than max (${size} vs ${this.#maxMessageBytes})`);
        this.#frame = this.#frameFor(PREFIX_BYTES + size);
        this.#prefix.copy(this.#frame, 0);
        this.#frameHave = PREFIX_BYTES;
      } else {
        const take = Math.min(this.#frame.length - this.#frameHave, data.length - at);
        data.copy(this.#frame, this.#frameHave, at, at + take);
        this.#frameHave += take;
        at += take;
      }
      if (this.#frameHave === this.#frame.length) {
        frames.push(this.#frame);
        this.#frame = null;
      }
    }
    return frames;
  }

  /** Takes back a buffer lent for a message, if this call keeps fewer than it may. */
  keep(buffer: Buffer): void {
    if (this.#kept.length < KEPT_PER_CALL) this.#kept.push(buffer);
  }

  #frameFor(bytes: number): Buffer {
    if (bytes < PREFIX_BYTES + LENDABLE_BYTES) return Buffer.allocUnsafe(bytes);
    const index = this.#kept.findIndex((buffer) => buffer.length >= bytes);
    // A memory of its own (never a slice of Node's shared pool), so handing it back cannot touch anything else.
    // Rounded up to whole pages: a call's messages differ by a few bytes of header (the first names the resource).
    const buffer =
      index === -1
        ? Buffer.allocUnsafeSlow(Math.ceil(bytes / PAGE_BYTES) * PAGE_BYTES)
        : this.#kept.splice(index, 1)[0]!;
    lent.set(buffer.buffer, { decoder: this, buffer });
    return buffer.subarray(0, bytes);
  }
}

/** Memory lent for a message, by its ArrayBuffer (which every view of the message, its fields' data too, shares). */
const lent = new WeakMap<ArrayBufferLike, { decoder: LendingDecoder; buffer: Buffer }>();

/** Views already handed back: handing one back again must not give away a later message lent the same memory. */
const handedBack = new WeakSet<Uint8Array>();

/**
 * Gives the memory of the received message that `data` is part of (a field's bytes, as decoded) back to its call's
 * decoder, for a later message. The caller promises that nothing reads that message, nor any view of it, any more.
 * Anything else (small messages, compressed ones, the same data handed back twice) is left alone.
 */
export function handBack(data: Uint8Array): void {
  if (handedBack.has(data)) return;
  handedBack.add(data);
  const loan = lent.get(data.buffer);
  if (loan === undefined) return;
  lent.delete(data.buffer);
  loan.decoder.keep(loan.buffer);
}

interface StreamDecoderLike {
  maxReadMessageLength?: unknown;
  readState?: unknown;
  write(data: Buffer): Buffer[];
}

const LENDING = Symbol('larder lending decoder');
type Wrapped = StreamDecoderLike & { [LENDING]?: LendingDecoder | null };
/** Wraps grpc-js's message decoder once per process; returns whether it could. */
export function allowLentFrames(): boolean {
  // The package's server and client code both decode with this class.
  return wrapGrpcJsMethod<StreamDecoderLike['write']>(
    'stream-decoder.js',
    'StreamDecoder',
    'write',
    (original) =>
      function write(this: Wrapped, data: Buffer): Buffer[] {
        let decoder = this[LENDING];
        if (decoder === undefined) {
          // A decoder grpc-js made as it makes them today (a limit, nothing read yet) is taken over for good; any other
          // (older internals, or one that was already reading when this was installed) keeps decoding as grpc-js does.
          const fresh = typeof this.maxReadMessageLength === 'number' && this.readState === 0;
          decoder = fresh ? new LendingDecoder(this.maxReadMessageLength as number) : null;
          this[LENDING] = decoder;
        }
        return decoder === null ? original.call(this, data) : decoder.write(data);
      },
  );
}
