/**
 * Lists of digests kept as the decoder read them (digest-lists.ts): each digest's hash and size in two arrays, and
 * where its encoding lies in the request's bytes, instead of a Digest object with a BigInt size each. A
 * FindMissingBlobs of 10,000 digests made 20,000 such objects, which lived for the whole call and were the largest
 * part of what the garbage collector then copied (issue 21); its handler reads the arrays (`digestColumns`), and
 * answers with some of the same digests (`chosenDigests`), encoded by copying their bytes from the request.
 *
 * The list stays a list of Digest for everyone else: the message's field is a getter that makes the objects, the
 * same ones protobuf-es would, the first time it is read.
 */
import { Attached } from './attached.ts';
import { framableMessage } from './bytes-message.ts';
import { DigestSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

type Fields = Record<string, unknown>;

export interface DigestColumns {
  /** Each digest's hash: always 64 lowercase hex characters (the decoder keeps columns only then). */
  readonly hashes: string[];
  /**
   * Each digest's size, a safe integer. Sizes and spans are typed arrays: their numbers lie outside the JS heap, which
   * the garbage collector then need not copy while a call holds them (digest-lists.ts).
   */
  readonly sizes: Float64Array;
  /** For each digest, where its value (length prefix and fields, not the list field's key) starts and ends in `bytes`. */
  readonly spans: Uint32Array;
  /**
   * The request's bytes, read again when the reply is encoded: they must not change meanwhile. Each unary request
   * has a buffer of its own (lent-frames.ts lends a buffer only to the next message of the call that handed it back).
   */
  readonly bytes: Buffer;
}

const columnsOf = new Attached<DigestColumns>('digest columns');

/** The columns of a decoded message's one list of digests, when the decoder kept them. */
export function digestColumns(message: object): DigestColumns | undefined {
  return columnsOf.get(message);
}

/** Makes `message[key]` the list of digests in `columns`, made when first read, and keeps the columns with it. */
export function keepColumns(message: Fields, key: string, columns: DigestColumns): void {
  columnsOf.set(message, columns);
  lazyList(
    message,
    key,
    () => digestsAt(columns),
    () => columnsOf.delete(message),
  );
}

/** The Digest objects of `columns`, all or those at `indexes`, as protobuf-es makes them. */
export function digestsAt(columns: DigestColumns, indexes?: ArrayLike<number>): Fields[] {
  const count = indexes === undefined ? columns.hashes.length : indexes.length;
  const digests = new Array<Fields>(count);
  for (let n = 0; n < count; n++) {
    const i = indexes === undefined ? n : indexes[n]!;
    digests[n] = { $typeName: DigestSchema.typeName, hash: columns.hashes[i]!, sizeBytes: BigInt(columns.sizes[i]!) };
  }
  return digests;
}

interface Chosen {
  key: string;
  columns: DigestColumns;
  indexes: ArrayLike<number>;
}

const chosenOf = new Attached<Chosen>('chosen digests');

/**
 * A reply whose list `key` holds the digests at `indexes` of `columns` (FindMissingBlobsResponse's missing ones):
 * its encoder copies their bytes from the request (`encodeChosen`), and the list is made only if read.
 */
export function chosenDigests<T>(key: string, columns: DigestColumns, indexes: ArrayLike<number>): T {
  const reply: Fields = {};
  chosenOf.set(reply, { key, columns, indexes });
  lazyList(
    reply,
    key,
    () => digestsAt(columns, indexes),
    () => chosenOf.delete(reply),
  );
  return reply as T;
}

/**
 * The encoding of a reply made by chosenDigests with one list `key` under field key `tag`, else undefined. Each
 * digest's bytes are the client's own, length prefix included: a valid encoding of the very digest the decoder read,
 * which is all a reader needs (a writer's choices, such as field order, are not part of the message).
 */
export function encodeChosen(message: unknown, key: string, tag: number): Buffer | undefined {
  const chosen = typeof message === 'object' && message !== null ? chosenOf.get(message) : undefined;
  if (chosen === undefined || chosen.key !== key || tag > 0x7f) return undefined;
  const { columns, indexes } = chosen;
  const { spans, bytes } = columns;
  let total = 0;
  for (let n = 0; n < indexes.length; n++) {
    const i = indexes[n]!;
    total += 1 + spans[2 * i + 1]! - spans[2 * i]!;
  }
  const out = framableMessage(total);
  let at = 0;
  for (let n = 0; n < indexes.length; n++) {
    const i = indexes[n]!;
    out[at++] = tag;
    at += bytes.copy(out, at, spans[2 * i]!, spans[2 * i + 1]!);
  }
  return out;
}

/**
 * Defines `message[key]` as `make()`'s list, made at the first read; a write replaces it like any field (and calls
 * `replaced`: whatever stood for the old list no longer does), and throws once the message is frozen (deepFreeze), as
 * a frozen field would. The list is kept beside the accessor rather than put in its place, so that freezing, which
 * reads every field, works too.
 *
 * The getter and setter are made once per field name and shared by every message, each message's own state attached
 * to it. V8 keeps an accessor's functions in the object's hidden class, which lives in the old generation: functions
 * made per message gave each message a hidden class of its own, which kept that call's columns alive through young
 * collections until a full one, as a WeakMap did (attached.ts).
 */
export function lazyList(message: object, key: string, make: () => object[], replaced: () => void): void {
  const field = lazyField(key);
  field.state.set(message, { list: undefined, make, replaced });
  Object.defineProperty(message, key, field.accessor);
}

interface LazyState {
  list: unknown;
  make: () => object[];
  replaced: () => void;
}

interface LazyField {
  state: Attached<LazyState>;
  accessor: PropertyDescriptor;
}

const lazyFields = new Map<string, LazyField>();

function lazyField(key: string): LazyField {
  const known = lazyFields.get(key);
  if (known !== undefined) return known;
  const state = new Attached<LazyState>(`lazy ${key}`);
  const field: LazyField = {
    state,
    accessor: {
      get(this: object) {
        const lazy = state.get(this)!;
        if (lazy.list === undefined) lazy.list = lazy.make();
        return lazy.list;
      },
      set(this: object, value: unknown) {
        if (Object.isFrozen(this)) throw new TypeError(`Cannot assign to read only property '${key}' of object`);
        const lazy = state.get(this)!;
        lazy.replaced();
        lazy.list = value;
      },
      enumerable: true,
      configurable: true,
    },
  };
  lazyFields.set(key, field);
  return field;
}
