/**
 * A fast encoder for messages made of one `bytes` field, such as ByteStream's ReadResponse, which carries up to 1 MiB
 * of blob per message. protobuf-es's generic writer grows its buffer by doubling and then joins its parts: for a
 * megabyte that is several copies, and most of a large Read's CPU went to garbage collection (42% of the executor's
 * time in a profile). Here the message is written in one allocation and one copy, byte for byte what the generic
 * writer produces (test/executor/grpc/bytes-message.test.ts checks that).
 *
 * A sender that owns the memory just in front of its data (bytesWithHeadroom: ByteStream Read reads blob bytes from
 * the file straight into a message buffer) gets no copy at all: the field's key and length are written into that
 * room and the message is the data's own memory. grpc-js then makes the one copy that frames it.
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
    const encoded = withHeadroom.get(data);
    withHeadroom.delete(data);
    if (encoded !== undefined && header.length <= BYTES_FIELD_HEADROOM) {
      const start = data.byteOffset - header.length;
      const message = Buffer.from(data.buffer, start, header.length + data.byteLength);
      message.set(header, 0);
      encoded();
      return message;
    }
    const out = Buffer.allocUnsafe(header.length + data.byteLength);
    out.set(header, 0);
    out.set(data, header.length);
    encoded?.();
    return out;
  };
}

/** Room for a bytes field's key and length (a one-byte key and a length of up to 2^28) in front of its data. */
export const BYTES_FIELD_HEADROOM = 5;

/** Data whose owner gave the BYTES_FIELD_HEADROOM bytes in front of it to the encoder, with what to tell it once encoded. */
const withHeadroom = new WeakMap<Uint8Array, () => void>();

/**
 * The `length` bytes at BYTES_FIELD_HEADROOM of `buffer` as a field's data, to be encoded in place: the caller gives
 * up the first BYTES_FIELD_HEADROOM bytes of the buffer, and must not change any of it until `encoded` is called.
 *
 * `encoded` runs inside the serializer, which grpc-js calls from its serializeMessage, copying the message into the
 * frame it sends before anything else runs (grpc-js 1.14, server-interceptors.js); so the buffer is free again for
 * code that awaited meanwhile: ByteStream Read reads the next chunk into it instead of allocating a megabyte per
 * message. A server that framed messages without copying them would have to call it later.
 */
export function bytesWithHeadroom(buffer: Uint8Array, length: number, encoded: () => void = () => {}): Uint8Array {
  const data = buffer.subarray(BYTES_FIELD_HEADROOM, BYTES_FIELD_HEADROOM + length);
  withHeadroom.set(data, encoded);
  return data;
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
