// One cache, two protocols: what the HTTP edge stores is a hit over gRPC and the other way round, with
// instance names as the edge's path prefixes. First both frontends over one store in one process, then
// real `larder edge` and `larder executor` processes taking turns on one disk folder.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEdgeApp } from '../../edge/app.ts';
import { createLogger } from '../../shared/log.ts';
import { openStore } from '../../shared/storage/from-config.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { ActionResultSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import {
  clientsFor,
  digestOf,
  randomBytes,
  readAll,
  sha256,
  startExecutorProcess,
  startTestServer,
  type TestServer,
} from './helpers.ts';
import { bytesOf } from '../helpers/bytes.ts';

const MiB = 1024 * 1024;

describe('edge and executor over one store', () => {
  const dir = tempDir('larder-interop-');
  let store: BlobStore;
  let grpcServer: TestServer;
  let http: ReturnType<typeof serve>;
  let base: string;

  beforeAll(async () => {
    store = await openStore({ kind: 'disk', path: `${dir.path}/store`, maxBytes: 1024 * MiB });
    const app = createEdgeApp({
      store,
      log: createLogger('silent'),
      maxBlobBytes: 64 * MiB,
      validateActionResults: true,
    });
    http = await new Promise((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    grpcServer = await startTestServer({ store });
  });
  afterAll(async () => {
    await grpcServer.stop();
    await new Promise((resolve) => http.close(resolve));
    await store.close?.();
    dir.remove();
  });

  it('serves a blob PUT over HTTP to FindMissingBlobs, BatchReadBlobs and ByteStream.Read, per instance', async () => {
    const data = randomBytes(3 * MiB, 11);
    const digest = digestOf(data);
    const put = await fetch(`${base}/team-a/cas/${digest.hash}`, { method: 'PUT', body: data });
    expect(put.status).toBe(200);

    const { cas } = grpcServer.clients;
    expect(
      (await cas.findMissingBlobs({ instanceName: 'team-a', blobDigests: [digest] })).missingBlobDigests,
    ).toHaveLength(0);
    expect((await cas.findMissingBlobs({ blobDigests: [digest] })).missingBlobDigests).toHaveLength(1);
    expect(sha256(await readAll(grpcServer.clients, `team-a/blobs/${digest.hash}/${data.byteLength}`))).toBe(
      digest.hash,
    );

    const small = Buffer.from('small over http');
    await fetch(`${base}/cas/${sha256(small)}`, { method: 'PUT', body: small });
    const batch = await cas.batchReadBlobs({ digests: [digestOf(small)] });
    expect(bytesOf(batch.responses[0]!.data)).toEqual(bytesOf(small));
  });

  it('serves a blob written over ByteStream to HTTP GET under the instance prefix', async () => {
    const data = randomBytes(2 * MiB + 5, 12);
    const { hash } = digestOf(data);
    await grpcServer.clients.bytestream.write([
      { resourceName: `ci/nightly/uploads/u/blobs/${hash}/${data.byteLength}`, data, finishWrite: true },
    ]);
    const got = await fetch(`${base}/ci/nightly/cas/${hash}`);
    expect(got.status).toBe(200);
    expect(sha256(Buffer.from(await got.arrayBuffer()))).toBe(hash);
    expect((await fetch(`${base}/cas/${hash}`)).status).toBe(404);
  });

  it('shares action-cache entries both ways', async () => {
    const out = Buffer.from('output file');
    await fetch(`${base}/team-a/cas/${sha256(out)}`, { method: 'PUT', body: out });
    const result = create(ActionResultSchema, { exitCode: 0, outputFiles: [{ path: 'o', digest: digestOf(out) }] });

    const viaGrpc = digestOf('action via grpc');
    await grpcServer.clients.ac.updateActionResult({
      instanceName: 'team-a',
      actionDigest: viaGrpc,
      actionResult: result,
    });
    const got = await fetch(`${base}/team-a/ac/${viaGrpc.hash}`);
    expect(got.status).toBe(200);
    expect(fromBinary(ActionResultSchema, new Uint8Array(await got.arrayBuffer())).outputFiles[0]!.path).toBe('o');

    const viaHttp = digestOf('action via http');
    const bytes = toBinary(ActionResultSchema, result);
    expect((await fetch(`${base}/team-a/ac/${viaHttp.hash}`, { method: 'PUT', body: bytes })).status).toBe(200);
    const read = await grpcServer.clients.ac.getActionResult({ instanceName: 'team-a', actionDigest: viaHttp });
    expect(toBinary(ActionResultSchema, read)).toEqual(bytes);
  });
});

describe('larder edge and larder executor processes on one disk folder', () => {
  const dir = tempDir('larder-interop-proc-');
  afterAll(() => dir.remove());

  it('reads over gRPC what the edge stored, and over HTTP what the executor stored', async () => {
    const store = `disk:${dir.path}/store`;
    const fromHttp = Buffer.from('written by the edge process');
    const edge = await startEdgeProcess({ runtime: 'node', args: ['--store', store] });
    try {
      expect(
        (await fetch(`${edge.url}/team-a/cas/${sha256(fromHttp)}`, { method: 'PUT', body: fromHttp })).status,
      ).toBe(200);
    } finally {
      await edge.stop();
    }

    // Each process keeps its own index of the disk store, rebuilt at start-up: so they take turns here.
    const fromGrpc = Buffer.from('written by the executor process');
    const executor = await startExecutorProcess(['--store', store]);
    expect(executor.url).toMatch(/^grpc:\/\/127\.0\.0\.1:\d+$/);
    const clients = clientsFor(`127.0.0.1:${executor.port}`);
    try {
      expect((await readAll(clients, `team-a/blobs/${sha256(fromHttp)}/${fromHttp.byteLength}`)).equals(fromHttp)).toBe(
        true,
      );
      await clients.bytestream.write([
        {
          resourceName: `team-a/uploads/u/blobs/${sha256(fromGrpc)}/${fromGrpc.byteLength}`,
          data: fromGrpc,
          finishWrite: true,
        },
      ]);
    } finally {
      clients.close();
      await executor.stop();
    }

    const edgeAgain = await startEdgeProcess({ runtime: 'node', args: ['--store', store] });
    try {
      const got = await fetch(`${edgeAgain.url}/team-a/cas/${sha256(fromGrpc)}`);
      expect(bytesOf(new Uint8Array(await got.arrayBuffer()))).toEqual(bytesOf(fromGrpc));
    } finally {
      await edgeAgain.stop();
    }
  }, 90_000);
});
