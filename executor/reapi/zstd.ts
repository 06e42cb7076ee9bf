/**
 * Zstandard for ByteStream `compressed-blobs/zstd/…` and zstd entries in BatchUpdateBlobs, on top of
 * zstd-napi's low-level binding (libzstd compiled at install time; an optional dependency). When the
 * package is absent `loadZstd()` returns null and the server simply does not advertise zstd.
 *
 * The binding's own stream classes push everything one input chunk expands to at once, so a few KiB of
 * crafted input could fill memory. These wrappers stop as soon as the output passes the size the
 * client declared for the blob, and emit output in bounded chunks that respect backpressure.
 */
import { createRequire } from 'node:module';
import type * as Binding from 'zstd-napi/binding';
import { LarderError } from '../../shared/errors.ts';
import { concat } from '../../shared/storage/streams.ts';

export interface Zstd {
  /** Compresses a byte stream into one zstd frame. */
  compressor(): TransformStream<Uint8Array, Uint8Array>;
  /**
   * Decompresses a byte stream of one or more frames; errors once the output would pass `maxBytes`.
   * Pull-driven: input is decoded only when the reader asks for output, one bounded chunk at a time.
   */
  decompressor(maxBytes: number): ReadableWritablePair<Uint8Array, Uint8Array>;
  /** Decompresses a whole buffer (BatchUpdateBlobs, whose batch limit bounds `maxBytes`), with the same bound. */
  decompress(data: Uint8Array, maxBytes: number): Uint8Array;
}

/** Fast levels: a cache is bound by CPU long before the network on loopback or a LAN. */
const LEVEL = 1;
/** The most one decoding step produces, and so about what one upload holds in memory while decoding. */
const OUT_CHUNK = 256 * 1024;

export function loadZstd(): Zstd | null {
  let binding: typeof Binding;
  try {
    binding = createRequire(import.meta.url)('zstd-napi/binding') as typeof Binding;
  } catch {
    return null;
  }
  return {
    compressor: () => compressor(binding),
    decompressor: (maxBytes) => decompressor(binding, maxBytes),
    decompress(data, maxBytes) {
      const chunks: Uint8Array[] = [];
      let length = 0;
      const decoder = new Decoder(binding, maxBytes);
      decoder.feed(data);
      for (let chunk = decoder.next(); chunk !== null; chunk = decoder.next()) {
        chunks.push(chunk);
        length += chunk.byteLength;
      }
      decoder.finish();
      return concat(chunks, length);
    },
  };
}

function compressor(binding: typeof Binding): TransformStream<Uint8Array, Uint8Array> {
  const cctx = new binding.CCtx();
  cctx.setParameter(binding.CParameter.compressionLevel, LEVEL);
  const scratch = Buffer.allocUnsafe(OUT_CHUNK);
  const run = (input: Uint8Array, directive: Binding.EndDirective, emit: (chunk: Uint8Array) => void) => {
    let src = input;
    for (;;) {
      const [remaining, produced, consumed] = cctx.compressStream2(scratch, src, directive);
      if (produced > 0) emit(Buffer.from(scratch.subarray(0, produced)));
      src = src.subarray(consumed);
      // Done when the input is used up and (for flush/end) nothing is left inside the context.
      if (src.byteLength === 0 && (directive === binding.EndDirective.continue || remaining === 0)) return;
    }
  };
  return new TransformStream({
    transform: (chunk, controller) => run(chunk, binding.EndDirective.continue, (out) => controller.enqueue(out)),
    flush: (controller) => run(new Uint8Array(0), binding.EndDirective.end, (out) => controller.enqueue(out)),
  });
}

/**
 * The binding's own streams (and a TransformStream's transform) would push everything one input chunk
 * expands to at once: 32 KiB of crafted RLE blocks becomes 1 GiB queued in memory. Here the readable side
 * pulls: each pull decodes until it has one chunk of output, and input is taken from the writable side
 * only when the decoder has used up the last. A channel of one chunk between them keeps `pipeThrough`.
 */
function decompressor(binding: typeof Binding, maxBytes: number): ReadableWritablePair<Uint8Array, Uint8Array> {
  const channel = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 1 }, { highWaterMark: 0 });
  const input = channel.readable.getReader();
  const decoder = new Decoder(binding, maxBytes);
  const readable = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const out = decoder.next();
            if (out !== null) return controller.enqueue(out);
            const { done, value } = await input.read();
            if (done) {
              decoder.finish();
              return controller.close();
            }
            decoder.feed(value);
          }
        } catch (err) {
          // Stops the writer too, so whoever pipes into us stops sending (and cancels its source).
          await input.cancel(err).catch(() => {});
          throw err;
        }
      },
      cancel: (reason) => input.cancel(reason),
    },
    { highWaterMark: 0 },
  );
  return { writable: channel.writable, readable };
}

/** One decoding context: `feed` it compressed bytes, take output with `next` until null, `finish` at the end. */
class Decoder {
  readonly #dctx: Binding.DCtx;
  readonly #scratch = Buffer.allocUnsafe(OUT_CHUNK);
  readonly #maxBytes: number;
  #src: Uint8Array = new Uint8Array(0);
  #produced = 0;
  #midFrame = false;
  /** A full output buffer may leave more output inside the context, to be drained even with no input. */
  #moreInside = false;

  constructor(binding: typeof Binding, maxBytes: number) {
    this.#dctx = new binding.DCtx();
    this.#maxBytes = maxBytes;
  }

  feed(input: Uint8Array): void {
    this.#src = input;
  }

  /** The next piece of output (at most OUT_CHUNK bytes), or null when the input fed so far is used up. */
  next(): Uint8Array | null {
    while (this.#src.byteLength > 0 || this.#moreInside) {
      let result: [number, number, number];
      try {
        result = this.#dctx.decompressStream(this.#scratch, this.#src);
      } catch (err) {
        throw new LarderError('invalid_argument', `not valid zstd data: ${(err as Error).message}`);
      }
      const [hint, written, consumed] = result;
      this.#produced += written;
      // Checked before the output is copied out: a frame that expands too far stops here, at most one chunk late.
      if (this.#produced > this.#maxBytes) {
        throw new LarderError(
          'size_mismatch',
          `size mismatch: the zstd data expands past the declared ${this.#maxBytes} bytes`,
        );
      }
      this.#src = this.#src.subarray(consumed);
      // After a finished frame, a call with no input reports the header size of a next frame: not mid-frame.
      if (consumed > 0 || written > 0) this.#midFrame = hint !== 0;
      this.#moreInside = written === this.#scratch.byteLength;
      if (written > 0) return Buffer.from(this.#scratch.subarray(0, written));
    }
    return null;
  }

  /** Checks the input did not stop in the middle of a frame. */
  finish(): void {
    if (this.#midFrame) throw new LarderError('invalid_argument', 'zstd data ends in the middle of a frame');
  }
}
