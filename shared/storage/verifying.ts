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
  // "Already stored" decides that an upload is dropped, so it must be true: a blob is skipped only when the batch
  // answer FindMissingBlobs uses knows it (behind a bucket index, indexed.ts, one the index has forgotten is
  // written again, which dates it afresh in the bucket and re-indexes it) AND the store itself still has it (an
  // index may vouch for a blob removed behind its back for a while, e.g. the disk store's 60 s).
  const stored = async (key: BlobKey): Promise<number | null> => {
    if (inner.statMany !== undefined && (await inner.statMany([key]))[0] === null) return null;
    return inner.stat(key);
  };
  return {
    get: (key) => inner.get(key),
    locate: inner.locate === undefined ? undefined : (key) => inner.locate!(key),
    readSmallInto:
      inner.readSmallInto === undefined
        ? undefined
        : (key, into, at, size) => inner.readSmallInto!(key, into, at, size),
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
    evictForFullDisk: inner.evictForFullDisk === undefined ? undefined : (bytes) => inner.evictForFullDisk!(bytes),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
