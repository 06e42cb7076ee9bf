/**
 * A fast encoder for messages made of one `bytes` field, such as ByteStream's ReadResponse, which carries up to 1 MiB
 * of blob per message. protobuf-es's generic writer grows its buffer by doubling and then joins its parts: for a
 * megabyte that is several copies, and most of a large Read's CPU went to garbage collection (42% of the executor's
 * time in a profile). Here the message is written in one allocation and one copy, byte for byte what the generic
 * writer produces (test/executor/grpc/bytes-message.test.ts checks that).
 *
 * A sender that owns the memory just in front of its data (bytesWithHeadroom: ByteStream Read reads blob bytes from
 * the file straight into a message buffer) gets no copy and no allocation at all: the field's key and length are
 * written into that room, and the gRPC message prefix in front of them when grpc-js frames it (in-place-frames.ts),
 * so the frame sent is the data's own memory.
 */
import type { DescMessage } from '@bufbuild/protobuf';
import { ScalarType } from '@bufbuild/protobuf';

/** The encoder for `schema` when it is a single-bytes-field message, else null (use the generic one). */
export function singleBytesEncoder(schema: DescMessage): ((message: unknown) => Buffer) | null {
  if (schema.fields.length !== 1) return null;
  const field = schema.fields[0]!;
  if (field.fieldKind !== 'scalar' || field.scalar !== ScalarType.BYTES) return null;
  const tag = (field.number << 3) | 2; // wire type 2: length-delimited
  const key = field.localName;
  return (message: unknown): Buffer => {
    const data = (message as Record<string, Uint8Array | undefined>)[key];
    // proto3: an empty bytes field is not written at all.
    if (data === undefined || data.byteLength === 0) return Buffer.alloc(0);
    const header = [...varint(tag), ...varint(data.byteLength)];
    if (withHeadroom.has(data) && header.length <= BYTES_FIELD_HEADROOM) {
      const start = data.byteOffset - header.length;
      const message = Buffer.from(data.buffer, start, header.length + data.byteLength);
      message.set(header, 0);
      framableInPlace.add(message);
      return message;
    }
    const out = Buffer.allocUnsafe(header.length + data.byteLength);
    out.set(header, 0);
    out.set(data, header.length);
    return out;
  };
}

/** Room for a bytes field's key and length (a one-byte key and a length of up to 2^28) in front of its data. */
export const BYTES_FIELD_HEADROOM = 5;

/** gRPC's message prefix: a compressed flag and a 4-byte big-endian length. */
const GRPC_PREFIX_BYTES = 5;

/** Room in front of a bytes field's data for the gRPC prefix, the field's key and its length: a whole frame in place. */
export const FRAME_HEADROOM = GRPC_PREFIX_BYTES + BYTES_FIELD_HEADROOM;

/** Data whose owner gave the memory in front of it (up to FRAME_HEADROOM bytes) to the encoder and framer. */
const withHeadroom = new WeakSet<Uint8Array>();

/** Encoded messages with room for the gRPC prefix just in front of them. */
const framableInPlace = new WeakSet<Uint8Array>();

/**
 * The `length` bytes at FRAME_HEADROOM of `buffer` as a field's data, to be encoded and framed in place: the caller
 * gives up the FRAME_HEADROOM bytes in front of it, and must not change any of the buffer until the message has been
 * written out (the server-streaming `send`'s `written`), since the frame grpc-js sends may be this very memory.
 */
export function bytesWithHeadroom(buffer: Uint8Array, length: number): Uint8Array {
  const data = buffer.subarray(FRAME_HEADROOM, FRAME_HEADROOM + length);
  withHeadroom.add(data);
  return data;
}

/**
 * Memory for an encoded message of `length` bytes, with room in front of it for the gRPC prefix, so that grpc-js frames
 * it in place (in-place-frames.ts) instead of copying it into a frame of its own: for an encoder that writes a large
 * message itself (BatchReadBlobs's megabyte of blobs), one allocation and one write. Nothing else holds the memory.
 */
export function framableMessage(length: number): Buffer {
  const message = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + length).subarray(GRPC_PREFIX_BYTES);
  framableInPlace.add(message);
  return message;
}

/**
 * The gRPC frame of an encoded `message` (an uncompressed one: grpc-js servers do not compress), written in the
 * room in front of it when its encoder left some (null otherwise: the caller copies it into a new frame).
 */
export function frameInPlace(message: Uint8Array): Buffer | null {
  if (!framableInPlace.has(message)) return null;
  framableInPlace.delete(message);
  const frame = Buffer.from(
    message.buffer,
    message.byteOffset - GRPC_PREFIX_BYTES,
    GRPC_PREFIX_BYTES + message.byteLength,
  );
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.byteLength, 1);
  return frame;
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return bytes;
}
