/**
 * What a worker needs of the CAS, and nothing more: read protos and files, upload outputs. In `larder
 * executor` the worker runs in-process and this is the store itself (store-cas.ts); a `larder worker` in its
 * own process implements the same interface over a frontend's REAPI CAS (grpc-cas.ts).
 *
 * Digests are checked `Digest`s (shared/digest.ts). Every method is scoped to one instance: a worker asks
 * for `WorkerCas` per action with the action's instance name.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Digest } from '../../shared/digest.ts';

export interface WorkerCas {
  /** The whole blob (Action, Command, Directory protos), or null when missing. Refuses blobs over `maxBytes`. */
  readBytes(digest: Digest, maxBytes: number): Promise<Uint8Array | null>;
  /**
   * Streams the blob into a new file at `path` (created exclusively, mode 0o600), returning false when the CAS
   * lacks it (nothing is left at `path` then). The bytes are checked against the digest on the way. When
   * `signal` aborts, the transfer stops, the file is removed and this rejects with the signal's reason.
   */
  readToFile(digest: Digest, path: string, signal?: AbortSignal): Promise<boolean>;
  /** The digests among `digests` the CAS does not hold; any number, asked in chunks the CAS can take. */
  findMissing(digests: readonly Digest[]): Promise<Digest[]>;
  /** Summed bytes one uploadBatch call may carry (a blob larger than this goes through uploadBytes/uploadFile). */
  readonly maxBatchBytes: number;
  /**
   * Uploads small blobs held in memory in one round (one BatchUpdateBlobs call over gRPC), for blobs the caller
   * found missing: unlike uploadBytes, it does not ask first. At most `maxBatchBytes` summed.
   */
  uploadBatch(blobs: ReadonlyArray<{ digest: Digest; bytes: Uint8Array }>): Promise<void>;
  /** Uploads bytes already in memory (a Tree, stdout). A blob already stored is not re-sent. */
  uploadBytes(digest: Digest, bytes: Uint8Array): Promise<void>;
  /**
   * Uploads an open file whose digest the caller computed, read from its start; streamed, never read whole.
   * The caller opened it (safely: output-file.ts) and closes it. A blob already stored is not re-sent.
   */
  uploadFile(digest: Digest, file: FileHandle): Promise<void>;
}
