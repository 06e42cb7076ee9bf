/**
 * GetTree: every Directory below a root, breadth first, each distinct directory once, in pages.
 *
 * Page tokens are the number of directories already returned. The walk is a pure function of the
 * stored directories, so a client that retries with a token gets the same continuation (REAPI only
 * asks for that much). Directories missing from the CAS are left out, as REAPI prescribes; only a
 * missing root is NOT_FOUND.
 */
import { fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { blobKey, type Digest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import { MAX_BUFFERED_PROTO_BYTES } from '../../shared/ac/validate.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import {
  type Directory,
  DirectorySchema,
  type GetTreeRequest,
  type GetTreeResponseSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../digests.ts';
import { mapLimit } from '../../shared/map-limit.ts';

const DEFAULT_PAGE_SIZE = 1000;
const MAX_PAGE_SIZE = 10_000;
/** Keeps each page well below gRPC's 4 MiB default message limit on the client. */
const MAX_PAGE_BYTES = 2 * 1024 * 1024;
const FETCH_CONCURRENCY = 16;

export interface TreeWalk {
  store: BlobStore;
  instance: string;
  request: GetTreeRequest;
  signal: AbortSignal;
}

type Page = MessageInitShape<typeof GetTreeResponseSchema>;

export async function streamTree(walk: TreeWalk, send: (page: Page) => Promise<void>): Promise<void> {
  const { request } = walk;
  const root = digestOf(request.rootDigest, 'root_digest');
  if (request.pageSize < 0) throw new LarderError('invalid_argument', `page_size must not be negative (got ${request.pageSize})`);
  const pageSize = Math.min(request.pageSize === 0 ? DEFAULT_PAGE_SIZE : request.pageSize, MAX_PAGE_SIZE);
  const skip = parseToken(request.pageToken);

  const rootDirectory = await fetchDirectory(walk, root);
  if (rootDirectory === null) throw new LarderError('not_found', `tree root ${root.hash}/${root.sizeBytes} not found`);
  if (rootDirectory === 'invalid') throw new LarderError('invalid_argument', `tree root ${root.hash}/${root.sizeBytes} is not a Directory`);

  const seen = new Set([id(root)]);
  let queue: Array<{ directory: Directory; bytes: number }> = [rootDirectory];
  let position = 0;
  let page: Directory[] = [];
  let pageBytes = 0;
  while (queue.length > 0) {
    const level = queue;
    queue = [];
    for (const { directory, bytes } of level) {
      if (position++ >= skip) {
        if (page.length >= pageSize || (page.length > 0 && pageBytes + bytes > MAX_PAGE_BYTES)) {
          await send({ directories: page, nextPageToken: String(position - 1) });
          page = [];
          pageBytes = 0;
        }
        page.push(directory);
        pageBytes += bytes;
      }
    }
    const fresh: Digest[] = [];
    for (const { directory } of level) {
      for (const node of directory.directories) {
        const digest = tryDigest(node.digest);
        if (digest === null || seen.has(id(digest))) continue;
        seen.add(id(digest));
        fresh.push(digest);
      }
    }
    const fetched = await mapLimit(fresh, FETCH_CONCURRENCY, (digest) => fetchDirectory(walk, digest));
    for (const entry of fetched) if (entry !== null && entry !== 'invalid') queue.push(entry);
  }
  await send({ directories: page, nextPageToken: '' });
}

async function fetchDirectory(walk: TreeWalk, digest: Digest): Promise<{ directory: Directory; bytes: number } | null | 'invalid'> {
  if (walk.signal.aborted) throw walk.signal.reason;
  const blob = await walk.store.get(blobKey(walk.instance, 'cas', digest.hash));
  if (blob === null) return null;
  if (blob.size !== digest.sizeBytes || blob.size > MAX_BUFFERED_PROTO_BYTES) {
    await blob.body.cancel();
    return null;
  }
  const bytes = await readWhole(blob, MAX_BUFFERED_PROTO_BYTES);
  try {
    return { directory: fromBinary(DirectorySchema, bytes), bytes: bytes.byteLength };
  } catch {
    return 'invalid';
  }
}

function parseToken(token: string): number {
  if (token === '') return 0;
  if (!/^\d{1,9}$/.test(token)) throw new LarderError('invalid_argument', `invalid page_token ${JSON.stringify(token.slice(0, 40))}`);
  return Number(token);
}

function tryDigest(message: Parameters<typeof digestOf>[0]): Digest | null {
  if (message === undefined) return null;
  try {
    return digestOf(message, 'directory digest');
  } catch {
    return null; // a malformed child digest names nothing that can be stored: left out like a missing one
  }
}

function id(digest: Digest): string {
  return `${digest.hash}/${digest.sizeBytes}`;
}
