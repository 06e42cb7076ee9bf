/**
 * A fast decoder and encoder for the messages that carry thousands of digests: FindMissingBlobsRequest (a name, a
 * digest function and a list of Digest), BatchReadBlobsRequest (the same and a list of compressors) and
 * FindMissingBlobsResponse (a list of Digest). protobuf-es's generic
 * reader and writer walk the schema field by field and build each Digest with `create`; for a FindMissingBlobs of
 * 10,000 digests that decoding and encoding, and the garbage it leaves, was about a third of the call's CPU in a
 * profile of the executor, which left it slower than bazel-remote on that call (issue 21).
 *
 * A list of digests whose hashes are all SHA-256 hashes is kept as columns, its Digest objects made only if it is read
 * (digest-columns.ts): FindMissingBlobs answers from the columns.
 *
 * The fast paths only take the shape real clients send: known fields with their own wire types, ASCII strings
 * (decoding) and sizes below 2^49 (decoding) or 2^53 (encoding). Anything else (unknown fields, non-ASCII names,
 * negative or huge sizes) goes to protobuf-es, so the result is always exactly what protobuf-es produces (test/executor/grpc/digest-lists.test.ts
 * checks both directions against it).
 */
import {
  create,
  fromBinary,
  ScalarType,
  toBinary,
  type DescField,
  type DescMessage,
  type MessageInitShape,
} from '@bufbuild/protobuf';
import { DigestSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { type DigestColumns, digestsAt, encodeChosen, keepColumns } from './digest-columns.ts';

type Fields = Record<string, unknown>;

/** Why the fast path gave up on a message: protobuf-es decodes (or refuses) it instead. */
class NotPlain extends Error {}
const NOT_PLAIN = new NotPlain();

const LENGTH_DELIMITED = 2;
const VARINT = 0;
/** Sizes and enum values whose varint fits in this many bytes are read as plain numbers (below 2^49). */
const SHORT_VARINT = 7;

/**
 * The decoder for `schema` when it is made only of strings, enums, lists of enums and lists of Digest (with at
 * least one list of Digest), else null (use protobuf-es). BatchReadBlobsRequest is one too: its list of enums is the
 * compressors the client accepts.
 */
export function digestListDecoder(schema: DescMessage): ((bytes: Uint8Array) => unknown) | null {
  if (
    !schema.fields.some(isDigestList) ||
    !schema.fields.every((f) => isDigestList(f) || isString(f) || isEnum(f) || isEnumList(f))
  )
    return null;
  // By field number, with each field's kind worked out once rather than for each of 10,000 digests.
  const byNumber: Array<PlainField | undefined> = [];
  for (const field of schema.fields) byNumber[field.number] = { field, kind: kindOf(field) };
  const typeName = schema.typeName;
  return (bytes: Uint8Array) => {
    try {
      return decodePlain(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), typeName, schema, byNumber);
    } catch (err) {
      if (err !== NOT_PLAIN) throw err;
      return fromBinary(schema, bytes);
    }
  };
}

/** The encoder for `schema` when it is made only of lists of Digest, else null (use protobuf-es). */
export function digestListEncoder(schema: DescMessage): ((message: unknown) => Buffer) | null {
  if (schema.fields.length === 0 || !schema.fields.every(isDigestList)) return null;
  const lists = schema.fields.map((f) => ({ key: f.localName, tag: (f.number << 3) | LENGTH_DELIMITED }));
  const [only] = lists;
  return (message: unknown): Buffer => {
    // A reply of digests chosen from a request's (FindMissingBlobs's missing ones): their bytes, copied.
    const copied = lists.length === 1 ? encodeChosen(message, only!.key, only!.tag) : undefined;
    if (copied !== undefined) return copied;
    const fields = message as Fields;
    // Measured once, written once: each digest's hash length (UTF-8 bytes) and size, then the whole message.
    const hashLengths: number[] = [];
    const sizes: number[] = [];
    let total = 0;
    for (const { key, tag } of lists) {
      for (const digest of (fields[key] as Fields[] | undefined) ?? []) {
        const { hash, sizeBytes } = digest;
        if (typeof hash !== 'string' || typeof sizeBytes !== 'bigint') return generic(schema, message);
        const size = Number(sizeBytes);
        if (!plainSize(size)) return generic(schema, message);
        const hashLength = Buffer.byteLength(hash);
        const inner = digestLength(hashLength, size);
        total += varintLength(tag) + varintLength(inner) + inner;
        hashLengths.push(hashLength);
        sizes.push(size);
      }
    }
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    let n = 0;
    for (const { key, tag } of lists) {
      for (const digest of (fields[key] as Fields[] | undefined) ?? []) {
        const hashLength = hashLengths[n]!;
        const size = sizes[n++]!;
        at = writeVarint(out, at, tag);
        at = writeVarint(out, at, digestLength(hashLength, size));
        at = writeDigestFields(out, at, digest.hash as string, hashLength, size);
      }
    }
    return out;
  };
}

/** Whether every Digest decoded since decoding began had a SHA-256 hash (set by decodeDigest, like varintEnd). */
let allHashes = true;
/** The hash and size of the Digest decodeDigest read last (like varintEnd: no pair per digest). */
let digestHash = '';
let digestSize = 0;

/** 1 for the bytes of lowercase hex digits, else 0. */
const LOWER_HEX = new Uint8Array(256);
for (const digit of '0123456789abcdef') LOWER_HEX[digit.charCodeAt(0)] = 1;

const HASH_TAG = (1 << 3) | LENGTH_DELIMITED;
const SIZE_TAG = (2 << 3) | VARINT;

/** A Digest's fields (not its key and length), as protobuf-es writes them; returns where the next byte goes. */
export function writeDigestFields(out: Buffer, from: number, hash: string, hashLength: number, size: number): number {
  let at = from;
  // proto3: empty strings and zeros are not written.
  if (hashLength > 0) {
    out[at++] = HASH_TAG;
    at = writeVarint(out, at, hashLength);
    // As many UTF-8 bytes as characters: all ASCII, where Latin-1 writes the same bytes with a plain copy.
    at += out.write(hash, at, hashLength, hashLength === hash.length ? 'latin1' : 'utf8');
  }
  if (size !== 0) {
    out[at++] = SIZE_TAG;
    at = writeVarint(out, at, size);
  }
  return at;
}

/** Bytes of a Digest's encoding (without its key and length), from its hash's UTF-8 length and its size. */
export function digestLength(hashLength: number, size: number): number {
  return (hashLength > 0 ? 1 + varintLength(hashLength) + hashLength : 0) + (size !== 0 ? 1 + varintLength(size) : 0);
}

/** Negative sizes take ten bytes of two's complement, and past 2^53 a number is not exact: those go to protobuf-es. */
export function plainSize(size: number): boolean {
  return size >= 0 && size <= Number.MAX_SAFE_INTEGER;
}

/** `message` encoded by protobuf-es: what every hand-written encoder here falls back to, and its reference. */
export function generic(schema: DescMessage, message: unknown): Buffer {
  const bytes = toBinary(schema, create(schema, message as MessageInitShape<DescMessage>));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodePlain(
  bytes: Buffer,
  typeName: string,
  schema: DescMessage,
  byNumber: Array<PlainField | undefined>,
): Fields {
  const message: Fields = { $typeName: typeName };
  // Lists of digests are read into columns (digest-columns.ts), and made Digest objects at the end or when read.
  for (const field of schema.fields)
    message[field.localName] = isDigestList(field)
      ? new ColumnsReader(bytes)
      : isEnumList(field)
        ? []
        : isString(field)
          ? ''
          : 0;
  allHashes = true;
  let at = 0;
  while (at < bytes.length) {
    const key = readVarint(bytes, at);
    const afterKey = varintEnd;
    const known = byNumber[key >>> 3];
    if (known === undefined) throw NOT_PLAIN;
    const { field, kind } = known;
    const wireType = key & 7;
    if (kind === 'enum') {
      if (wireType !== VARINT) throw NOT_PLAIN;
      const value = readVarint(bytes, afterKey);
      at = varintEnd;
      message[field.localName] = enumValue(value);
      continue;
    }
    if (kind === 'enums' && wireType === VARINT) {
      const value = readVarint(bytes, afterKey);
      at = varintEnd;
      (message[field.localName] as number[]).push(enumValue(value));
      continue;
    }
    if (wireType !== LENGTH_DELIMITED) throw NOT_PLAIN;
    const length = readVarint(bytes, afterKey);
    const start = varintEnd;
    at = start + length;
    if (at > bytes.length) throw NOT_PLAIN;
    if (kind === 'enums') {
      // Packed, as proto3 writers send them: the values one after another.
      const values = message[field.localName] as number[];
      for (let next = start; next < at; ) {
        const value = readVarint(bytes, next);
        next = varintEnd;
        if (next > at) throw NOT_PLAIN;
        values.push(enumValue(value));
      }
      continue;
    }
    if (kind === 'string') {
      message[field.localName] = ascii(bytes, start, at);
      continue;
    }
    decodeDigest(bytes, start, at);
    (message[field.localName] as ColumnsReader).add(digestHash, digestSize, afterKey, at);
  }
  // Columns are kept only where every hash is a SHA-256 hash (their handlers check nothing more) and the message has
  // one list: FindMissingBlobsRequest and BatchReadBlobsRequest.
  const lists = schema.fields.filter(isDigestList);
  for (const field of lists) {
    const columns = (message[field.localName] as ColumnsReader).columns();
    if (allHashes && lists.length === 1) keepColumns(message, field.localName, columns);
    else message[field.localName] = digestsAt(columns);
  }
  return message;
}

/** The fewest bytes a Digest with a SHA-256 hash takes in a list: key, length, the hash's key, length and 64 digits. */
const SHA256_ENTRY_BYTES = 68;

/**
 * One list's columns as they are read, sized once for the most SHA-256 digests the message can hold rather than grown
 * element by element, with sizes and spans in typed arrays (outside the JS heap). Decoding a FindMissingBlobs of
 * 10,000 digests allocated 2.0 MB on the heap with growing arrays and 0.9 MB (mostly its hashes) this way: less for
 * the young collector to copy when it runs during a call (issue 21). Lists of other digests (shorter, so more of them
 * fit) grow by doubling.
 */
class ColumnsReader {
  readonly #bytes: Buffer;
  #hashes: string[];
  #sizes: Float64Array;
  #spans: Uint32Array;
  #count = 0;

  constructor(bytes: Buffer) {
    const capacity = Math.ceil(bytes.length / SHA256_ENTRY_BYTES);
    this.#bytes = bytes;
    this.#hashes = new Array<string>(capacity);
    this.#sizes = new Float64Array(capacity);
    this.#spans = new Uint32Array(2 * capacity);
  }

  add(hash: string, size: number, from: number, to: number): void {
    const n = this.#count++;
    if (n === this.#sizes.length) this.#grow();
    this.#hashes[n] = hash;
    this.#sizes[n] = size;
    this.#spans[2 * n] = from;
    this.#spans[2 * n + 1] = to;
  }

  columns(): DigestColumns {
    const count = this.#count;
    this.#hashes.length = count;
    return {
      hashes: this.#hashes,
      sizes: this.#sizes.subarray(0, count),
      spans: this.#spans.subarray(0, 2 * count),
      bytes: this.#bytes,
    };
  }

  #grow(): void {
    const sizes = new Float64Array(2 * this.#sizes.length + 16);
    sizes.set(this.#sizes);
    this.#sizes = sizes;
    const spans = new Uint32Array(2 * sizes.length);
    spans.set(this.#spans);
    this.#spans = spans;
  }
}

/** An enum's value as protobuf-es reads it (an int32), when that is the varint's own value. */
function enumValue(value: number): number {
  if (value > 0x7fffffff) throw NOT_PLAIN; // protobuf-es reads an int32: such a value wraps around
  return value;
}

/** Reads a Digest's fields into digestHash and digestSize. */
function decodeDigest(bytes: Buffer, from: number, to: number): void {
  let hash = '';
  let size = 0;
  let isSha256 = false; // the last hash field wins, as in protobuf-es; none is an empty hash
  let at = from;
  while (at < to) {
    const key = bytes[at++]!;
    if (key === HASH_TAG) {
      const length = readVarint(bytes, at);
      const start = varintEnd;
      at = start + length;
      if (at > to) throw NOT_PLAIN;
      isSha256 = length === 64 && lowerHex(bytes, start, at);
      hash = isSha256 ? bytes.toString('latin1', start, at) : ascii(bytes, start, at);
    } else if (key === SIZE_TAG) {
      size = readVarint(bytes, at);
      at = varintEnd;
      if (at > to) throw NOT_PLAIN;
    } else throw NOT_PLAIN;
  }
  if (!isSha256) allHashes = false;
  digestHash = hash;
  digestSize = size;
}

/** Whether the bytes are all lowercase hex digits (so ASCII too). */
function lowerHex(bytes: Buffer, from: number, to: number): boolean {
  let all = 1;
  for (let i = from; i < to; i++) all &= LOWER_HEX[bytes[i]!]!;
  return all === 1;
}

/** The bytes as a string when all are ASCII (where UTF-8 and Latin-1 agree), else not for the fast path. */
function ascii(bytes: Buffer, from: number, to: number): string {
  for (let i = from; i < to; i++) if (bytes[i]! > 0x7f) throw NOT_PLAIN;
  return bytes.toString('latin1', from, to);
}

/**
 * Where the varint readVarint read last ended. A second result handed back this way rather than in a pair: a
 * FindMissingBlobs of 10,000 digests reads 40,000 varints, and a pair each was garbage the collector then paid for.
 */
let varintEnd = 0;

/** A varint of at most SHORT_VARINT bytes as a number; where the next field starts is left in varintEnd. */
function readVarint(bytes: Buffer, from: number): number {
  let value = 0;
  let scale = 1;
  for (let at = from; at < from + SHORT_VARINT && at < bytes.length; at++) {
    const byte = bytes[at]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      varintEnd = at + 1;
      return value;
    }
    scale *= 128;
  }
  throw NOT_PLAIN;
}

export function writeVarint(out: Buffer, from: number, value: number): number {
  let at = from;
  while (value > 0x7f) {
    out[at++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[at++] = value;
  return at;
}

export function varintLength(value: number): number {
  let length = 1;
  while (value > 0x7f) {
    value = Math.floor(value / 128);
    length++;
  }
  return length;
}

/** What the fast decoder takes a field for. */
type Kind = 'digests' | 'string' | 'enum' | 'enums';

interface PlainField {
  field: DescField;
  kind: Kind;
}

/** A field's kind, for a field digestListDecoder takes (a string, an enum or a list of enums or of Digest). */
function kindOf(field: DescField): Kind {
  if (isDigestList(field)) return 'digests';
  if (isString(field)) return 'string';
  return isEnum(field) ? 'enum' : 'enums';
}

function isDigestList(field: DescField): boolean {
  return field.fieldKind === 'list' && field.listKind === 'message' && field.message.typeName === DigestSchema.typeName;
}

function isString(field: DescField): boolean {
  return field.fieldKind === 'scalar' && field.scalar === ScalarType.STRING;
}

function isEnum(field: DescField): boolean {
  return field.fieldKind === 'enum';
}

function isEnumList(field: DescField): boolean {
  return field.fieldKind === 'list' && field.listKind === 'enum';
}
