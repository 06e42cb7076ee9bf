/**
 * Action-cache entries that point at CAS blobs which are gone make Bazel fail instead of re-running the
 * action, so a read of such an entry is answered as a miss. Used by the HTTP edge and the gRPC ActionCache.
 */
import { fromBinary } from '@bufbuild/protobuf';
import type { BlobStore } from '../storage/store.ts';
import { readWhole } from '../storage/streams.ts';
import { blobKey } from '../digest.ts';
import { LarderError } from '../errors.ts';
import { mapLimit } from '../map-limit.ts';
import {
  type ActionResult,
  ActionResultSchema,
  TreeSchema,
  type Digest as DigestMessage,
} from '../proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Lookups in flight per entry checked: an entry may name thousands of outputs, each a HEAD on S3. */
const LOOKUPS = 32;

/** AC entries and Trees are read whole; real ones are kilobytes, this bounds a hostile one. */
export const MAX_BUFFERED_PROTO_BYTES = 16 * 1024 * 1024;

/** Decodes an ActionResult, or fails with 'invalid_argument' saying so. */
export function decodeActionResult(bytes: Uint8Array): ActionResult {
  try {
    return fromBinary(ActionResultSchema, bytes);
  } catch (err) {
    throw new LarderError('invalid_argument', `not a valid ActionResult protobuf: ${(err as Error).message}`);
  }
}

/** True when every blob the entry refers to (outputs, stdout/stderr, whole output trees) is in the CAS. */
export async function outputsPresent(store: BlobStore, instance: string, result: ActionResult): Promise<boolean> {
  const wanted: DigestMessage[] = [];
  for (const file of result.outputFiles) if (file.digest && file.contents.byteLength === 0) wanted.push(file.digest);
  if (result.stdoutDigest && result.stdoutRaw.byteLength === 0) wanted.push(result.stdoutDigest);
  if (result.stderrDigest && result.stderrRaw.byteLength === 0) wanted.push(result.stderrDigest);
  if (!(await allPresent(store, instance, wanted))) return false;

  for (const directory of result.outputDirectories) {
    if (!directory.treeDigest) continue;
    const treeFiles = await filesOfTree(store, instance, directory.treeDigest);
    if (treeFiles === null || !(await allPresent(store, instance, treeFiles))) return false;
  }
  return true;
}

async function allPresent(store: BlobStore, instance: string, digests: DigestMessage[]): Promise<boolean> {
  const checks = await mapLimit(digests, LOOKUPS, (d) => isPresent(store, instance, d));
  return checks.every(Boolean);
}

async function isPresent(store: BlobStore, instance: string, digest: DigestMessage): Promise<boolean> {
  if (digest.sizeBytes === 0n) return true; // the empty blob is always available
  if (!SHA256_HEX.test(digest.hash)) return false;
  const size = await store.stat(blobKey(instance, 'cas', digest.hash));
  return size !== null && BigInt(size) === digest.sizeBytes;
}

/** The file digests inside an output directory's Tree, or null when the Tree itself is missing. */
async function filesOfTree(
  store: BlobStore,
  instance: string,
  treeDigest: DigestMessage,
): Promise<DigestMessage[] | null> {
  if (!SHA256_HEX.test(treeDigest.hash)) return null;
  const blob = await store.get(blobKey(instance, 'cas', treeDigest.hash));
  if (blob === null) return null;
  let tree;
  try {
    tree = fromBinary(TreeSchema, await readWhole(blob, MAX_BUFFERED_PROTO_BYTES));
  } catch {
    return null; // not a Tree: the entry cannot be served
  }
  const directories = tree.root ? [tree.root, ...tree.children] : tree.children;
  return directories.flatMap((dir) => dir.files.flatMap((file) => (file.digest ? [file.digest] : [])));
}
