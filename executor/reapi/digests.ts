/**
 * REAPI request fields parsed once at the boundary, as shared/digest.ts does for HTTP paths: digest
 * messages become checked `Digest`s, instance names are validated, and the digest function is SHA-256
 * or refused. Instance names are the edge's path prefixes, so both frontends address the same keys.
 */
import { create } from '@bufbuild/protobuf';
import { type Digest, parseDigest, parseInstance } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import {
  type Digest as DigestMessage,
  DigestFunction_Value,
  DigestSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

/** The digest functions larder can verify; GetCapabilities advertises exactly these. */
export const DIGEST_FUNCTIONS = [DigestFunction_Value.SHA256];

/**
 * Accepts SHA256 and UNKNOWN (older clients leave the field unset; the 64-hex hashes then say SHA-256).
 * Anything else is refused: a store keyed by SHA-256 cannot check a BLAKE3 or SHA-1 digest.
 */
export function checkDigestFunction(value: DigestFunction_Value): void {
  if (value === DigestFunction_Value.UNKNOWN || DIGEST_FUNCTIONS.includes(value)) return;
  const name = DigestFunction_Value[value] ?? String(value);
  throw new LarderError('invalid_argument', `unsupported digest function ${name}: this server speaks SHA256 only`);
}

/** A checked digest from a request field, which must be present. */
export function digestOf(message: DigestMessage | undefined, field: string): Digest {
  if (message === undefined) throw new LarderError('invalid_argument', `${field} is missing`);
  try {
    return parseDigest(message.hash, message.sizeBytes);
  } catch (err) {
    throw (err as LarderError).wrap?.(field) ?? err;
  }
}

export function instanceOf(name: string): string {
  return parseInstance(name);
}

export function digestMessage(digest: Digest): DigestMessage {
  return create(DigestSchema, { hash: digest.hash, sizeBytes: BigInt(digest.sizeBytes) });
}
