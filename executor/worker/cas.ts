/**
 * What a worker needs of the CAS, and nothing more: read protos and files, upload outputs. In `larder
 * executor` the worker runs in-process and this is the store itself (store-cas.ts); a `larder worker` in its
 * own process will implement the same interface over a frontend's REAPI CAS (gRPC).
 *
 * Digests are checked `Digest`s (shared/digest.ts). Every method is scoped to one instance: a worker asks
 * for `WorkerCas` per action with the action's instance name.
 */
import type { Digest } from '../../shared/digest.ts';

export interface WorkerCas {
  /** The whole blob (Action, Command, Directory protos), or null when missing. Refuses blobs over `maxBytes`. */
  readBytes(digest: Digest, maxBytes: number): Promise<Uint8Array | null>;
  /**
   * Streams the blob into a new file at `path` (created exclusively, mode 0o600), returning false when the CAS
   * lacks it (nothing is left at `path` then). The bytes are checked against the digest on the way.
   */
  readToFile(digest: Digest, path: string): Promise<boolean>;
  /** The digests among `digests` the CAS does not hold. */
  findMissing(digests: readonly Digest[]): Promise<Digest[]>;
  /** Uploads bytes already in memory (small outputs, Trees, stdout). A blob already stored is not re-sent. */
  uploadBytes(digest: Digest, bytes: Uint8Array): Promise<void>;
  /** Uploads a file whose digest the caller computed; streamed, never read whole. */
  uploadFile(digest: Digest, path: string): Promise<void>;
}
