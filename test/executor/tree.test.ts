// GetTree page tokens over a real gRPC channel: a token belongs to the request that produced it, and
// resuming from one costs about one page of store reads, not a walk from the root.
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Directory,
  DirectorySchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { codeOf, digestOf, drain, startTestServer, type TestServer } from './helpers.ts';

/** A real memory store that counts reads. */
function counting(inner: BlobStore) {
  const reads = { count: 0 };
  const store: BlobStore = {
    get: (key) => {
      reads.count++;
      return inner.get(key);
    },
    stat: (key) => inner.stat(key),
    put: (key, body, size) => inner.put(key, body, size),
  };
  return { store, reads };
}

describe('GetTree page tokens', () => {
  const { store, reads } = counting(new MemoryStore({ maxBytes: 1 << 28 }));
  let server: TestServer;
  let root: { hash: string; sizeBytes: bigint };
  let other: { hash: string; sizeBytes: bigint };
  const CHILDREN = 2000;

  const put = async (dir: Directory, instanceName = '') => {
    const bytes = toBinary(DirectorySchema, dir);
    await server.clients.cas.batchUpdateBlobs({ instanceName, requests: [{ digest: digestOf(bytes), data: bytes }] });
    return digestOf(bytes);
  };

  beforeAll(async () => {
    server = await startTestServer({ store });
    const children = [];
    for (let i = 0; i < CHILDREN; i++)
      children.push({ name: `d${i}`, digest: await put(create(DirectorySchema, { files: [{ name: `f${i}` }] })) });
    root = await put(create(DirectorySchema, { directories: children }));
    other = await put(create(DirectorySchema, { directories: children.slice(0, 10) }));
  }, 60_000);
  afterAll(() => server.stop());

  it('resumes near the end of a large tree with about one page of reads', async () => {
    const pages = await drain(server.clients.cas.getTree({ rootDigest: root, pageSize: 100 }));
    expect(pages.flatMap((p) => p.directories)).toHaveLength(CHILDREN + 1);
    const token = pages.at(-3)!.nextPageToken;
    const before = reads.count;
    const rest = await drain(server.clients.cas.getTree({ rootDigest: root, pageSize: 100, pageToken: token }));
    expect(rest.flatMap((p) => p.directories)).toEqual(pages.slice(-2).flatMap((p) => p.directories));
    console.log(
      `GetTree resume: ${reads.count - before} reads for ${rest.flatMap((p) => p.directories).length} directories`,
    );
    expect(reads.count - before).toBeLessThanOrEqual(150);
  });

  it('resumes a token on a server that does not remember the walk (another process), by walking again', async () => {
    const pages = await drain(server.clients.cas.getTree({ rootDigest: root, pageSize: 100 }));
    const second = await startTestServer({ store });
    try {
      const rest = await drain(
        second.clients.cas.getTree({ rootDigest: root, pageSize: 100, pageToken: pages.at(-3)!.nextPageToken }),
      );
      expect(rest.flatMap((p) => p.directories)).toEqual(pages.slice(-2).flatMap((p) => p.directories));
    } finally {
      await second.stop();
    }
  });

  it('refuses a token with another root or instance', async () => {
    const pages = await drain(server.clients.cas.getTree({ rootDigest: root, pageSize: 100 }));
    const token = pages[0]!.nextPageToken;
    for (const request of [
      { rootDigest: other, pageSize: 100, pageToken: token },
      { instanceName: 'elsewhere', rootDigest: root, pageSize: 100, pageToken: token },
    ]) {
      const { code, details } = await codeOf(drain(server.clients.cas.getTree(request)));
      expect(code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(details).toMatch(/page_token/);
    }
  });
});
