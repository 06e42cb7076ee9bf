/**
 * Replies a handler hands out again and again unchanged (FetchBlob answering the same cached download in every
 * build) are encoded once: protobuf-es's generic writer costs more than everything else such an answer takes.
 * A handler marks the reply with `reusedReply`, which freezes it so nothing can change it afterwards; adapt.ts's
 * serializer keeps its bytes with it. grpc-js copies a message's bytes into each call's frame, so one encoding
 * serves every call.
 */
const encodings = new WeakMap<object, Buffer | null>();

/** Marks `reply` (and the messages in it) as never changing again, so that it is encoded only once. */
export function reusedReply<T extends object>(reply: T): T {
  deepFreeze(reply);
  encodings.set(reply, null);
  return reply;
}

/** The bytes of `message`: from its first encoding when it is a reused reply, else from `encode`. */
export function encodedOnce(message: unknown, encode: (message: unknown) => Buffer): Buffer {
  if (typeof message !== 'object' || message === null) return encode(message);
  const known = encodings.get(message);
  if (known === undefined) return encode(message);
  if (known !== null) return known;
  const bytes = encode(message);
  encodings.set(message, bytes);
  return bytes;
}

/** Freezes a message and the messages and lists in it; bytes fields cannot be frozen and are left as they are. */
export function deepFreeze(value: object): void {
  Object.freeze(value);
  for (const field of Object.values(value))
    if (typeof field === 'object' && field !== null && !ArrayBuffer.isView(field) && !Object.isFrozen(field))
      deepFreeze(field);
}
