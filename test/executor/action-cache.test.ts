// ActionCache over a real gRPC channel: round trip, validation against the CAS, inlining, bad inputs.
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ActionResultSchema,
  DigestFunction_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { tmpdir } from 'node:os';
import { PartialUploads } from '../../executor/bytestream/partial-uploads.ts';
import { createExecutorServer } from '../../executor/startup/server.ts';
import { createLogger } from '../../shared/log.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import { clientsFor, codeOf, digestOf, startTestServer, type TestServer } from './helpers.ts';

describe('ActionCache', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  const upload = async (instanceName: string, ...blobs: string[]) => {
    const reply = await server.clients.cas.batchUpdateBlobs({
      instanceName,
      requests: blobs.map((b) => ({ digest: digestOf(b), data: Buffer.from(b) })),
    });
    expect(reply.responses.map((r) => r.status?.code ?? 0)).toEqual(blobs.map(() => 0));
  };

  it('stores a result and serves it back on the same instance only', async () => {
    await upload('team-a', 'out-1', 'stdout text');
    const action = digestOf('action 1');
    const result = create(ActionResultSchema, {
      exitCode: 0,
      outputFiles: [{ path: 'bazel-out/out-1', digest: digestOf('out-1'), isExecutable: true }],
      stdoutDigest: digestOf('stdout text'),
    });
    const stored = await server.clients.ac.updateActionResult({
      instanceName: 'team-a',
      actionDigest: action,
      actionResult: result,
    });
    expect(stored.outputFiles[0]!.path).toBe('bazel-out/out-1');

    const read = await server.clients.ac.getActionResult({ instanceName: 'team-a', actionDigest: action });
    expect(toBinary(ActionResultSchema, read)).toEqual(toBinary(ActionResultSchema, result));
    expect((await codeOf(server.clients.ac.getActionResult({ actionDigest: action }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('answers NOT_FOUND for an entry whose outputs are gone from the CAS', async () => {
    const action = digestOf('action with lost outputs');
    await server.clients.ac.updateActionResult({
      actionDigest: action,
      actionResult: { outputFiles: [{ path: 'lost', digest: digestOf('never uploaded') }] },
    });
    const miss = await codeOf(server.clients.ac.getActionResult({ actionDigest: action }));
    expect(miss.code).toBe(grpc.status.NOT_FOUND);
    expect(miss.details).toMatch(/outputs/);
  });

  it('inlines stdout, stderr and the output files asked for', async () => {
    await upload('', 'inline me', 'not me', 'the out', 'the err');
    const action = digestOf('action inline');
    await server.clients.ac.updateActionResult({
      actionDigest: action,
      actionResult: {
        outputFiles: [
          { path: 'a', digest: digestOf('inline me') },
          { path: 'b', digest: digestOf('not me') },
        ],
        stdoutDigest: digestOf('the out'),
        stderrDigest: digestOf('the err'),
      },
    });
    const plain = await server.clients.ac.getActionResult({ actionDigest: action });
    expect(plain.stdoutRaw.byteLength + plain.stderrRaw.byteLength).toBe(0);
    expect(plain.outputFiles.filter((f) => f.contents.byteLength !== 0).map((f) => f.path)).toEqual([]);

    const inlined = await server.clients.ac.getActionResult({
      actionDigest: action,
      inlineStdout: true,
      inlineStderr: true,
      inlineOutputFiles: ['a'],
    });
    expect(Buffer.from(inlined.stdoutRaw).toString()).toBe('the out');
    expect(Buffer.from(inlined.stderrRaw).toString()).toBe('the err');
    expect(Buffer.from(inlined.outputFiles[0]!.contents).toString()).toBe('inline me');
    expect(inlined.outputFiles[1]!.contents.byteLength).toBe(0);
    expect(inlined.outputFiles[1]!.digest?.hash).toBe(digestOf('not me').hash);
  });

  it('refuses malformed requests with INVALID_ARGUMENT', async () => {
    const ac = server.clients.ac;
    const cases: Array<Promise<unknown>> = [
      ac.getActionResult({ actionDigest: { hash: 'abc', sizeBytes: 1n } }),
      ac.getActionResult({}),
      ac.getActionResult({ actionDigest: digestOf('x'), digestFunction: DigestFunction_Value.SHA512 }),
      ac.getActionResult({ instanceName: 'a/../b', actionDigest: digestOf('x') }),
      ac.updateActionResult({ actionDigest: digestOf('x') }),
      ac.updateActionResult({ actionDigest: { hash: digestOf('x').hash, sizeBytes: -5n }, actionResult: {} }),
      ac.updateActionResult({
        actionDigest: digestOf('x'),
        actionResult: {},
        digestFunction: DigestFunction_Value.VSO,
      }),
    ];
    for (const call of cases) expect((await codeOf(call)).code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('ActionCache without write permission', () => {
  it('reports update_enabled false and refuses UpdateActionResult (the seam for per-role auth)', async () => {
    const uploads = await PartialUploads.open({
      parentDir: `${tmpdir()}/larder-test-uploads`,
      maxBytes: 1e6,
      maxUploads: 1,
      idleMs: 1000,
      minBlobBytes: 1,
    });
    const server = createExecutorServer({
      store: new MemoryStore({ maxBytes: 1e6 }),
      log: createLogger('silent'),
      maxBlobBytes: 1e6,
      maxBatchBytes: 1e6,
      validateActionResults: true,
      uploads,
      zstd: null,
      canUpdateActionCache: () => false,
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const clients = clientsFor(`127.0.0.1:${port}`);
    try {
      const caps = await clients.capabilities.getCapabilities({});
      expect(caps.cacheCapabilities?.actionCacheUpdateCapabilities?.updateEnabled).toBe(false);
      expect(caps.cacheCapabilities?.supportedCompressors).toEqual([]);
      const denied = await codeOf(clients.ac.updateActionResult({ actionDigest: digestOf('a'), actionResult: {} }));
      expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    } finally {
      clients.close();
      server.forceShutdown();
      await uploads.close();
    }
  });
});
