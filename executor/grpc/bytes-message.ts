/**
 * A fast encoder for messages made of one `bytes` field, such as ByteStream's ReadResponse, which carries up to 1 MiB
 * of blob per message. protobuf-es's generic writer grows its buffer by doubling and then joins its parts: for a
 * megabyte that is several copies, and most of a large Read's CPU went to garbage collection (42% of the executor's
 * time in a profile). Here the message is written in one allocation and one copy, byte for byte what the generic
 * writer produces (test/executor/grpc/bytes-message.test.ts checks that).
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
    const out = Buffer.allocUnsafe(header.length + data.byteLength);
    out.set(header, 0);
    out.set(data, header.length);
    return out;
  };
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
