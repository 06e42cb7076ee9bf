/**
 * Requests a client sends again and again, byte for byte, are decoded once: Bazel asks FetchBlob for the same
 * downloads in every build, and protobuf-es's generic reader cost such a call more than the cache lookup that
 * answers it (a profile of bench/asset.ts: about twice the hand-written FindMissingBlobs decoder's time per call).
 * The decoded message is frozen, nested messages included, and kept under its bytes; every later call with the
 * same bytes gets that same object, and a handler that tried to change it would throw. Being one object, it also
 * lets a handler's own memo (asset/request-memo.ts) find what it worked out from it by identity.
 *
 * Only the methods named in REPEATED: their handlers read their request and never change it. Bounded: requests of
 * at most MAX_BYTES, at most LIMIT of them kept, the one kept first going first.
 */
import type { DescMessage } from '@bufbuild/protobuf';
import { FetchBlobRequestSchema } from '../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import { deepFreeze } from './reused-replies.ts';

const REPEATED: ReadonlySet<string> = new Set([FetchBlobRequestSchema.typeName]);
const MAX_BYTES = 2048;
const LIMIT = 4096;

/** `decode` with a memory of recent requests when `schema` is one of REPEATED, else null. */
export function repeatedRequestDecoder(
  schema: DescMessage,
  decode: (bytes: Uint8Array) => unknown,
): ((bytes: Uint8Array) => unknown) | null {
  if (!REPEATED.has(schema.typeName)) return null;
  const kept = new Map<string, unknown>();
  return (bytes) => {
    if (bytes.byteLength > MAX_BYTES) return decode(bytes);
    // latin1 maps each byte to one character: equal keys are equal bytes.
    const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    const known = kept.get(key);
    if (known !== undefined) return known;
    const message = decode(bytes);
    // Only what decoded is kept: a malformed request throws above and is refused again next time.
    deepFreeze(message as object);
    kept.set(key, message);
    if (kept.size > LIMIT) kept.delete(kept.keys().next().value!);
    return message;
  };
}
