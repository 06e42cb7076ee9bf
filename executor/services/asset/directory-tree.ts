/**
 * Whether a whole Directory tree is in the CAS: every Directory message from the root down and every file
 * it names, at its size. PushDirectory records only complete trees, and FetchDirectory answers only while
 * the tree still is, so a client (BuildStream pulling an artifact) never gets a root it cannot download.
 * Bounded: each Directory is read once, however often it appears, and at most MAX_DIRECTORIES of them.
 */
import { fromBinary } from '@bufbuild/protobuf';
import { blobKey, type Digest } from '../../../shared/digest.ts';
import { LarderError } from '../../../shared/errors.ts';
import { mapLimit } from '../../../shared/map-limit.ts';
import { DirectorySchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { readWhole } from '../../../shared/storage/streams.ts';
import { digestOf } from '../../reapi/digests.ts';

const MAX_DIRECTORIES = 100_000;
const MAX_DIRECTORY_BYTES = 16 * 1024 * 1024;
const LOOKUPS = 32;

/** The first digest of the tree missing from the CAS (or not a Directory where one is needed), or null when complete. */
export async function firstMissing(store: BlobStore, instance: string, root: Digest): Promise<string | null> {
  const seen = new Set<string>([root.hash]);
  const files = new Map<string, number>();
  let level: Digest[] = [root];
  while (level.length > 0) {
    const next: Digest[] = [];
    for (const digest of level) {
      const blob = await store.get(blobKey(instance, 'cas', digest.hash));
      if (blob === null || blob.size !== digest.sizeBytes) {
        await blob?.body.cancel();
        return `directory ${digest.hash}/${digest.sizeBytes}`;
      }
      let directory;
      try {
        directory = fromBinary(DirectorySchema, await readWhole(blob, MAX_DIRECTORY_BYTES));
      } catch {
        return `directory ${digest.hash}/${digest.sizeBytes} (not a Directory message)`;
      }
      for (const file of directory.files) {
        const fileDigest = digestOf(file.digest, `file ${file.name}`);
        files.set(fileDigest.hash, fileDigest.sizeBytes);
      }
      for (const child of directory.directories) {
        const childDigest = digestOf(child.digest, `directory ${child.name}`);
        if (seen.has(childDigest.hash)) continue;
        seen.add(childDigest.hash);
        if (seen.size > MAX_DIRECTORIES)
          throw new LarderError('invalid_argument', `the tree has more than ${MAX_DIRECTORIES} directories`);
        next.push(childDigest);
      }
    }
    level = next;
  }
  const entries = [...files].filter(([, size]) => size > 0);
  const sizes = await mapLimit(entries, LOOKUPS, ([hash]) => store.stat(blobKey(instance, 'cas', hash)));
  const missing = entries.findIndex(([, size], i) => sizes[i] !== size);
  return missing === -1 ? null : `file ${entries[missing]![0]}/${entries[missing]![1]}`;
}
