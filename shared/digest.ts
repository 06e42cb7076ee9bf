/**
 * Blob identities, parsed once at the boundary. After parsing, no code handles a raw hash string that
 * has not been checked to be 64 lowercase hex characters.
 */
import { LarderError } from './errors.ts';

/** A SHA-256 digest as REAPI uses it: lowercase hex hash plus the blob's length. */
export interface Digest {
  readonly hash: string;
  readonly sizeBytes: number;
}

export type BlobKind = 'ac' | 'cas';

/** Where a blob lives: an instance (tenant namespace, '' by default), a key space and a hash. */
export interface BlobKey {
  readonly instance: string;
  readonly kind: BlobKind;
  readonly hash: string;
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * A digest as messages, logs and map keys write it: `hash/size`. Takes protobuf Digest messages too (their size is
 * a bigint), so a digest from a reply and one parsed here give the same text.
 */
export function formatDigest(digest: { readonly hash: string; readonly sizeBytes: number | bigint }): string {
  return `${digest.hash}/${digest.sizeBytes}`;
}

/** The empty blob's digest: every CAS has it without storing it, and reads of it need no store. */
export function isEmptyDigest(digest: Digest): boolean {
  return digest.sizeBytes === 0 && digest.hash === EMPTY_SHA256;
}

/**
 * Any character that is not lowercase hex. Length and characters are checked apart: V8 runs `/^[0-9a-f]{64}$/` at
 * about half this speed, and a FindMissingBlobs checks 10,000 hashes. A loop over the characters with a lookup table
 * was slower still in the executor (hashes reach it as several kinds of V8 string, which the regex engine takes alike).
 */
const NOT_HEX = /[^0-9a-f]/;

/** Whether `hash` is 64 lowercase hex characters. */
export function isHash(hash: string): boolean {
  return hash.length === 64 && !NOT_HEX.test(hash);
}

/** Checks a SHA-256 hex string. Uppercase is refused rather than folded: Bazel always sends lowercase. */
export function parseHash(hash: string): string {
  if (!isHash(hash)) {
    throw new LarderError(
      'invalid_argument',
      `not a SHA-256 hash (64 lowercase hex characters): ${JSON.stringify(hash.slice(0, 80))}`,
    );
  }
  return hash;
}

export function parseDigest(hash: string, sizeBytes: number | bigint | string): Digest {
  const size = Number(sizeBytes);
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new LarderError('invalid_argument', `invalid blob size: ${String(sizeBytes)}`);
  }
  return { hash: parseHash(hash), sizeBytes: size };
}

const INSTANCE_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const MAX_INSTANCE_LENGTH = 256;

/**
 * Checks an instance name: '/'-separated segments of letters, digits, '_', '.', '-', none starting with
 * '.', so an instance can never name a path outside its own folder.
 */
export function parseInstance(instance: string): string {
  if (instance === '') return instance;
  if (instance.length > MAX_INSTANCE_LENGTH || !instance.split('/').every((s) => INSTANCE_SEGMENT.test(s))) {
    throw new LarderError('invalid_argument', `invalid instance name: ${JSON.stringify(instance.slice(0, 80))}`);
  }
  return instance;
}

export function blobKey(instance: string, kind: BlobKind, hash: string): BlobKey {
  return { instance: parseInstance(instance), kind, hash: parseHash(hash) };
}

export function formatKey(key: BlobKey): string {
  return `${key.instance || '(default)'}/${key.kind}/${key.hash}`;
}
