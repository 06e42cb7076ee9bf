// grpc-js decodes a large received message into memory its handler handed back (executor/grpc/lent-frames.ts reaches
// into grpc-js for that). This fails if a grpc-js update stops it from working: every Write message would be a fresh
// buffer again.
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder.js';
import { expect, it } from 'vitest';
import { allowLentFrames, handBack, LENDABLE_BYTES } from '../../../executor/grpc/lent-frames.ts';
import { randomBytes } from '../helpers.ts';

/** A gRPC frame of `message`: the uncompressed flag, the length, the message. */
function frameOf(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([prefix, message]);
}

/** Feeds `bytes` to `decoder` in pieces of `piece` bytes (HTTP/2 DATA frames), returning the frames decoded. */
function decode(decoder: StreamDecoder, bytes: Uint8Array, piece = 16 * 1024): Buffer[] {
  const frames: Buffer[] = [];
  for (let at = 0; at < bytes.byteLength; at += piece)
    frames.push(...decoder.write(Buffer.from(bytes.subarray(at, at + piece))));
  return frames;
}

it('decodes a large message into memory handed back from an earlier one of the same call', () => {
  expect(allowLentFrames()).toBe(true);
  expect(allowLentFrames()).toBe(true); // once per process, however often asked
  const decoder = new StreamDecoder(-1);
  const first = randomBytes(LENDABLE_BYTES * 4, 31);
  const second = randomBytes(LENDABLE_BYTES * 3, 32);
  const [one] = decode(decoder, frameOf(first));
  expect(Buffer.compare(one!, frameOf(first))).toBe(0);
  // The handler hands back a field's data, a view into the message, as protobuf-es decodes it.
  const field = one!.subarray(8);
  handBack(field);
  const [two] = decode(decoder, frameOf(second));
  expect(two!.buffer === one!.buffer).toBe(true); // (not toBe on the buffers: a failure would print megabytes)
  expect(Buffer.compare(two!, frameOf(second))).toBe(0);

  // Handing the first back again must not give away the memory the second now holds.
  handBack(field);
  const [three] = decode(decoder, frameOf(first));
  expect(three!.buffer === two!.buffer).toBe(false);
  expect(Buffer.compare(two!, frameOf(second))).toBe(0);
});

it('never reuses a message that was not handed back, nor one of another call, nor a small one', () => {
  allowLentFrames();
  const decoder = new StreamDecoder(-1);
  const other = new StreamDecoder(-1);
  const large = randomBytes(LENDABLE_BYTES * 2, 33);
  const [kept] = decode(decoder, frameOf(large));
  const [handed] = decode(other, frameOf(large));
  handBack(handed!.subarray(5));
  const [next] = decode(decoder, frameOf(randomBytes(LENDABLE_BYTES * 2, 34)));
  expect(next!.buffer === kept!.buffer).toBe(false);
  expect(next!.buffer === handed!.buffer).toBe(false);
  expect(Buffer.compare(kept!, frameOf(large))).toBe(0);

  const small = randomBytes(300, 35);
  const [little] = decode(decoder, frameOf(small));
  handBack(little!.subarray(5));
  const [after] = decode(decoder, frameOf(small));
  expect(after!.buffer === little!.buffer && after!.byteOffset === little!.byteOffset).toBe(false);
  expect(Buffer.compare(little!, frameOf(small))).toBe(0);
});

it('decodes messages of every size split anywhere, as grpc-js does, and refuses one over the limit', () => {
  allowLentFrames();
  const decoder = new StreamDecoder(-1);
  const messages = [0, 1, 4, 5, 300, LENDABLE_BYTES - 1, LENDABLE_BYTES, LENDABLE_BYTES * 3 + 7, 17].map((size, i) =>
    randomBytes(size, 40 + i),
  );
  const wire = Buffer.concat(messages.map(frameOf));
  for (const piece of [1, 3, 5, 4096, 16 * 1024 + 1, wire.byteLength]) {
    const frames = decode(decoder, wire, piece);
    expect(frames.map((f) => f.toString('hex'))).toEqual(messages.map((m) => frameOf(m).toString('hex')));
    for (const frame of frames) handBack(frame.subarray(5));
  }

  const limited = new StreamDecoder(100);
  expect(() => decode(limited, frameOf(randomBytes(101, 50)))).toThrow('Received message larger than max (101 vs 100)');
});
