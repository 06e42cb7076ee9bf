/**
 * FetchDirectory and PushDirectory, as BuildStream uses them for its artifact cache: empty probes are
 * INVALID_ARGUMENT ("supported"), a complete tree pushed under a urn: is fetched back by root digest, an
 * incomplete one is refused and never answered.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type ServiceClient } from '../../../executor/grpc/client.ts';
import { Fetch, Push } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import { DirectorySchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { codeOf, digestOf, startTestServer, type TestServer } from '../helpers.ts';

const { INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION } = grpc.status;

/** A two-level tree: a.txt and sub/b.txt; returns its blobs (root last) and the root's digest. */
function tree(b: string) {
  const sub = toBinary(DirectorySchema, create(DirectorySchema, { files: [{ name: 'b.txt', digest: digestOf(b) }] }));
  const root = toBinary(
    DirectorySchema,
    create(DirectorySchema, {
      files: [{ name: 'a.txt', digest: digestOf('artifact a\n') }],
      directories: [{ name: 'sub', digest: digestOf(sub) }],
    }),
  );
  return { blobs: ['artifact a\n', b, sub, root], root: digestOf(root) };
}

describe('FetchDirectory and PushDirectory', () => {
  let server: TestServer;
  let fetch: ServiceClient<typeof Fetch>;
  let push: ServiceClient<typeof Push>;

  const upload = async (blobs: Array<string | Uint8Array>) => {
    const requests = blobs.map((blob) => ({
      digest: digestOf(blob),
      data: typeof blob === 'string' ? Buffer.from(blob) : blob,
    }));
    await server.clients.cas.batchUpdateBlobs({ requests });
  };

  beforeAll(async () => {
    server = await startTestServer();
    fetch = createClient(Fetch, server.address);
    push = createClient(Push, server.address);
  });
  afterAll(async () => {
    fetch?.close();
    push?.close();
    await server?.stop();
  });

  it("answers BuildStream's empty probes with INVALID_ARGUMENT, which it reads as 'supported'", async () => {
    expect((await codeOf(fetch.fetchDirectory({}))).code).toBe(INVALID_ARGUMENT);
    expect((await codeOf(push.pushDirectory({}))).code).toBe(INVALID_ARGUMENT);
  });

  it('fetches a pushed tree back by its URN, and only as a directory', async () => {
    const { blobs, root } = tree('artifact b\n');
    await upload(blobs);
    const uri = 'urn:fdc:buildstream.build:2020:artifact:project/element/abc123';
    expect((await codeOf(fetch.fetchDirectory({ uris: [uri] }))).code).toBe(NOT_FOUND);
    await push.pushDirectory({ uris: [uri], rootDirectoryDigest: root });
    const reply = await fetch.fetchDirectory({ uris: [uri] });
    expect(reply.rootDirectoryDigest).toEqual(expect.objectContaining(root));
    expect(reply.uri).toBe(uri);
    expect((await codeOf(fetch.fetchBlob({ uris: [uri] }))).code).toBe(NOT_FOUND);
  });

  it('refuses to record a tree with a blob missing from the CAS', async () => {
    const { blobs, root } = tree('never uploaded\n');
    await upload(blobs.filter((blob) => blob !== 'never uploaded\n'));
    const refused = await codeOf(
      push.pushDirectory({ uris: ['urn:larder-test:incomplete'], rootDirectoryDigest: root }),
    );
    expect(refused).toEqual({
      code: FAILED_PRECONDITION,
      details: expect.stringMatching(new RegExp(`file ${digestOf('never uploaded\n').hash}/15 is missing`)),
    });
    expect((await codeOf(fetch.fetchDirectory({ uris: ['urn:larder-test:incomplete'] }))).code).toBe(NOT_FOUND);
  });
});
