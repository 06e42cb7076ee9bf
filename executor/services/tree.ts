/**
 * GetTree: every Directory below a root, breadth first, each distinct directory once, in pages bounded by
 * count and by bytes.
 *
 * A page token is the number of directories already returned plus a tag of the request's instance and root,
 * so a token is refused anywhere but in a continuation of the call that produced it. The walk is a pure
 * function of the stored directories, so a client that retries with a token gets the same continuation
 * (REAPI only asks for that much); recent walks' orders are remembered (TreeOrders) so that resuming reads
 * only the directories of the pages it sends. Directories missing from the CAS are left out, as REAPI
 * prescribes; only a missing root is NOT_FOUND. One Directory larger than a client's receive limit cannot be
 * split: it is sent alone in its page.
 */
import { fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import { blobKey, type Digest, formatDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import { MAX_BUFFERED_PROTO_BYTES } from '../../shared/ac/validate.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { readWhole } from '../../shared/storage/streams.ts';
import {
  type Directory,
  DirectorySchema,
  type GetTreeRequest,
  type GetTreeResponseSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestOf } from '../reapi/digests.ts';
import type { TreeOrders } from './tree-orders.ts';

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
  orders: TreeOrders;
}

type Page = MessageInitShape<typeof GetTreeResponseSchema>;
type Fetched = { digest: Digest; directory: Directory; bytes: number };

export async function streamTree(walk: TreeWalk, send: (page: Page) => Promise<void>): Promise<void> {
  const { request } = walk;
  const root = digestOf(request.rootDigest, 'root_digest');
  if (request.pageSize < 0)
    throw new LarderError('invalid_argument', `page_size must not be negative (got ${request.pageSize})`);
  const pageSize = Math.min(request.pageSize === 0 ? DEFAULT_PAGE_SIZE : request.pageSize, MAX_PAGE_SIZE);
  const key = `${walk.instance}\0${formatDigest(root)}`;
  const tag = createHash('sha256').update(key).digest('hex').slice(0, 12);
  const skip = parseToken(request.pageToken, tag);
  const pages = pager(pageSize, tag, skip, send);

  const known = skip > 0 ? walk.orders.get(key) : undefined;
  if (known !== undefined && skip <= known.length) {
    // Resuming a remembered walk: read only what the pages need, a page's worth at a time.
    pages.resumeAt(skip);
    for (let from = skip; from < known.length; from += pageSize) {
      const batch = await mapLimit(known.slice(from, from + pageSize), FETCH_CONCURRENCY, (digest) =>
        fetchDirectory(walk, digest),
      );
      for (const entry of batch) if (entry !== null && entry !== 'invalid') await pages.add(entry);
    }
    return pages.finish();
  }

  const order = await walkFrom(walk, root, pages.add);
  walk.orders.set(key, order);
  await pages.finish();
}

/** The breadth-first walk from the root, handing each directory on; returns the order it met them in. */
async function walkFrom(walk: TreeWalk, root: Digest, visit: (entry: Fetched) => Promise<void>): Promise<Digest[]> {
  const rootDirectory = await fetchDirectory(walk, root);
  if (rootDirectory === null) throw new LarderError('not_found', `tree root ${formatDigest(root)} not found`);
  if (rootDirectory === 'invalid')
    throw new LarderError('invalid_argument', `tree root ${formatDigest(root)} is not a Directory`);
  const seen = new Set([formatDigest(root)]);
  const order: Digest[] = [];
  let level: Fetched[] = [rootDirectory];
  while (level.length > 0) {
    for (const entry of level) {
      order.push(entry.digest);
      await visit(entry);
    }
    const fresh: Digest[] = [];
    for (const { directory } of level) {
      for (const node of directory.directories) {
        const digest = tryDigest(node.digest);
        if (digest === null || seen.has(formatDigest(digest))) continue;
        seen.add(formatDigest(digest));
        fresh.push(digest);
      }
    }
    const fetched = await mapLimit(fresh, FETCH_CONCURRENCY, (digest) => fetchDirectory(walk, digest));
    level = fetched.filter((entry): entry is Fetched => entry !== null && entry !== 'invalid');
  }
  return order;
}

/** Collects directories into pages; the first `skip` (already returned) are counted but not sent. */
function pager(pageSize: number, tag: string, skip: number, send: (page: Page) => Promise<void>) {
  let position = 0;
  let page: Directory[] = [];
  let pageBytes = 0;
  return {
    add: async ({ directory, bytes }: Fetched) => {
      if (position++ < skip) return;
      if (page.length >= pageSize || (page.length > 0 && pageBytes + bytes > MAX_PAGE_BYTES)) {
        await send({ directories: page, nextPageToken: `${position - 1}.${tag}` });
        page = [];
        pageBytes = 0;
      }
      page.push(directory);
      pageBytes += bytes;
    },
    /** For a remembered walk, which hands on only the directories from the token on. */
    resumeAt(at: number) {
      position = at;
    },
    finish: () => send({ directories: page, nextPageToken: '' }),
  };
}

async function fetchDirectory(walk: TreeWalk, digest: Digest): Promise<Fetched | null | 'invalid'> {
  if (walk.signal.aborted) throw walk.signal.reason;
  const blob = await walk.store.get(blobKey(walk.instance, 'cas', digest.hash));
  if (blob === null) return null;
  if (blob.size !== digest.sizeBytes || blob.size > MAX_BUFFERED_PROTO_BYTES) {
    await blob.body.cancel();
    return null;
  }
  const bytes = await readWhole(blob, MAX_BUFFERED_PROTO_BYTES);
  try {
    return { digest, directory: fromBinary(DirectorySchema, bytes), bytes: bytes.byteLength };
  } catch {
    return 'invalid';
  }
}

/** The position a token resumes at; refuses tokens that are malformed or belong to another tree or instance. */
function parseToken(token: string, tag: string): number {
  if (token === '') return 0;
  const match = /^(\d{1,9})\.([0-9a-f]{12})$/.exec(token);
  if (match === null)
    throw new LarderError('invalid_argument', `invalid page_token ${JSON.stringify(token.slice(0, 40))}`);
  if (match[2] !== tag)
    throw new LarderError('invalid_argument', 'page_token belongs to a GetTree call for another root or instance');
  return Number(match[1]);
}

function tryDigest(message: Parameters<typeof digestOf>[0]): Digest | null {
  if (message === undefined) return null;
  try {
    return digestOf(message, 'directory digest');
  } catch {
    return null; // a malformed child digest names nothing that can be stored: left out like a missing one
  }
}
