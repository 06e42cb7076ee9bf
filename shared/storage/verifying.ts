/**
 * Wrap the outermost store with this: every upload is checked against its digest and declared size
 * before anything is published, and a CAS upload of a blob already stored is checked but not written
 * again (Bazel re-uploads every output it produces, so that is the common case). A store that can adopt
 * files keeps that ability, with the caller's hash checked against the key.
 */
import type { BlobKey } from '../digest.ts';
import { LarderError } from '../errors.ts';
import type { BlobBody, BlobStore } from './store.ts';
import { drain } from './streams.ts';
import { verifier, verifyWhole } from './verify.ts';

export function verifying(inner: BlobStore): BlobStore {
  // "Already stored" is asked the way FindMissingBlobs asks it: behind a bucket index (indexed.ts) a blob the index
  // does not know is written again, which dates it afresh in the bucket and puts it back in the index.
  const stored = async (key: BlobKey): Promise<number | null> =>
    inner.statMany === undefined ? inner.stat(key) : (await inner.statMany([key]))[0]!;
  return {
    get: (key) => inner.get(key),
    locate: inner.locate === undefined ? undefined : (key) => inner.locate!(key),
    stat: (key) => inner.stat(key),
    statMany: inner.statMany === undefined ? undefined : (keys) => inner.statMany!(keys),
    async put(key: BlobKey, body: BlobBody, size: number) {
      if (body instanceof Uint8Array) {
        // Whole bytes: one hash call; a blob already stored costs that and a stat, nothing else.
        verifyWhole(key, body, size);
        if (key.kind === 'cas' && (await stored(key)) === size) return;
        return inner.put(key, body, size);
      }
      const checked = body.pipeThrough(verifier(key, size));
      if (key.kind === 'cas' && (await stored(key)) === size) {
        // Still hashed, so a client that sends wrong bytes hears about it.
        return drain(checked);
      }
      return inner.put(key, checked, size);
    },
    // The caller hashed the file as it wrote it; this only checks that hash against the key.
    adopt:
      inner.adopt === undefined
        ? undefined
        : async (key: BlobKey, path: string, size: number, sha256: string) => {
            if (key.kind === 'cas' && sha256 !== key.hash) {
              throw new LarderError(
                'digest_mismatch',
                `sha256 mismatch: the digest says ${key.hash}, the bytes hash to ${sha256}`,
              );
            }
            return inner.adopt!(key, path, size, sha256);
          },
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
