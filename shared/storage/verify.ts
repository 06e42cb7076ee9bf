/**
 * Integrity checking while bytes stream past: a TransformStream that counts and hashes, and errors the
 * stream (so the store behind it publishes nothing) when the length or SHA-256 is wrong.
 *
 * Web Crypto has no incremental hash, so this uses node:crypto, which Node and Deno both provide.
 */
import { createHash } from 'node:crypto';
import type { BlobKey } from '../digest.ts';
import { LarderError } from '../errors.ts';

/** The same checks for a body already in memory: one hash call, no stream (throws what the verifier would). */
export function verifyWhole(key: BlobKey, bytes: Uint8Array, size: number): void {
  if (bytes.byteLength !== size) {
    throw new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received ${bytes.byteLength}`);
  }
  if (key.kind !== 'cas') return;
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== key.hash) {
    throw new LarderError('digest_mismatch', `sha256 mismatch: the URL says ${key.hash}, the body hashes to ${actual}`);
  }
}

export function verifier(key: BlobKey, size: number): TransformStream<Uint8Array, Uint8Array> {
  // AC keys are hashes of the Action, not of the entry, so only the length can be checked for them.
  const hash = key.kind === 'cas' ? createHash('sha256') : null;
  let seen = 0;
  return new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > size) {
        throw new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received more`);
      }
      hash?.update(chunk);
      controller.enqueue(chunk);
    },
    flush() {
      if (seen !== size) {
        throw new LarderError('size_mismatch', `size mismatch: declared ${size} bytes, received ${seen}`);
      }
      const actual = hash?.digest('hex');
      if (actual !== undefined && actual !== key.hash) {
        throw new LarderError(
          'digest_mismatch',
          `sha256 mismatch: the URL says ${key.hash}, the body hashes to ${actual}`,
        );
      }
    },
  });
}
