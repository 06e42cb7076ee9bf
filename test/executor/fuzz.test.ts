// Throws random, truncated and bit-flipped protobuf bytes at every method for a bounded time. The server
// must answer each call with a status (never INTERNAL or UNKNOWN, which would mean a request crashed a
// handler) and still serve real requests afterwards.
import { create, toBinary, type DescMessage, type DescService } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { ByteStream } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { Health } from '../../shared/proto/gen/grpc/health/v1/health_pb.ts';
import { digestOf, startTestServer, type TestServer } from './helpers.ts';

const FUZZ_MS = 3000;
const IN_FLIGHT = 8;
const SERVICES: DescService[] = [Capabilities, ContentAddressableStorage, ActionCache, ByteStream, Health];

let server: TestServer;
let client: grpc.Client;
beforeAll(async () => {
  server = await startTestServer();
  client = new grpc.Client(server.address, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await server.stop();
});

/** A seeded generator, so a failing run can be replayed by its seed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  return { next, int: (n: number) => Math.floor(next() * n) };
}

/** Valid-looking seeds for each request type, so mutations reach past the first byte. */
function seedFor(input: DescMessage): Uint8Array {
  const digest = digestOf('fuzz');
  const hash = digest.hash;
  const samples: Record<string, Record<string, unknown>> = {
    'build.bazel.remote.execution.v2.FindMissingBlobsRequest': { instanceName: 'x', blobDigests: [digest, digest] },
    'build.bazel.remote.execution.v2.BatchUpdateBlobsRequest': { requests: [{ digest, data: Buffer.from('fuzz') }] },
    'build.bazel.remote.execution.v2.BatchReadBlobsRequest': { digests: [digest] },
    'build.bazel.remote.execution.v2.GetTreeRequest': { rootDigest: digest, pageSize: 2 },
    'build.bazel.remote.execution.v2.GetActionResultRequest': { actionDigest: digest, inlineStdout: true },
    'build.bazel.remote.execution.v2.UpdateActionResultRequest': {
      actionDigest: digest,
      actionResult: { exitCode: 1 },
    },
    'google.bytestream.ReadRequest': { resourceName: `blobs/${hash}/4`, readOffset: 1n },
    'google.bytestream.WriteRequest': {
      resourceName: `uploads/u/blobs/${hash}/4`,
      data: Buffer.from('fuzz'),
      finishWrite: true,
    },
    'google.bytestream.QueryWriteStatusRequest': { resourceName: `uploads/u/blobs/${hash}/4` },
  };
  return toBinary(input, create(input, samples[input.typeName] ?? {}));
}

function mutate(seed: Uint8Array, r: ReturnType<typeof rng>): Buffer {
  switch (r.int(4)) {
    case 0: // pure noise
      return Buffer.from(Array.from({ length: r.int(200) }, () => r.int(256)));
    case 1: // truncated
      return Buffer.from(seed.subarray(0, r.int(seed.byteLength)));
    case 2: {
      // bit flips
      const out = Buffer.from(seed);
      for (let i = 0, n = 1 + r.int(4); i < n && out.length > 0; i++) out[r.int(out.length)]! ^= 1 << r.int(8);
      return out;
    }
    default: // valid prefix, garbage tail (bad tags, overlong varints)
      return Buffer.concat([
        Buffer.from(seed),
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, r.int(256)]),
      ]);
  }
}

type Outcome = { code: number; details: string };
const id = (b: Buffer) => b;

function call(path: string, kind: string, payloads: Buffer[]): Promise<Outcome> {
  const deadline = Date.now() + 5000;
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null) =>
      resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '' });
    if (kind === 'unary') {
      client.makeUnaryRequest(path, id, id, payloads[0]!, new grpc.Metadata(), { deadline }, (err) => done(err));
    } else if (kind === 'server_streaming') {
      const stream = client.makeServerStreamRequest(path, id, id, payloads[0]!, new grpc.Metadata(), { deadline });
      stream.on('data', () => {});
      stream.on('error', (err: grpc.ServiceError) => done(err));
      stream.on('end', () => setImmediate(() => done(null)));
    } else {
      const stream = client.makeClientStreamRequest(path, id, id, new grpc.Metadata(), { deadline }, (err) =>
        done(err),
      );
      for (const payload of payloads) stream.write(payload);
      stream.end();
    }
  });
}

it(`survives ${FUZZ_MS / 1000} s of malformed requests to every method`, async () => {
  const methods = SERVICES.flatMap((s) =>
    s.methods.map((m) => ({ path: `/${s.typeName}/${m.name}`, kind: m.methodKind, seed: seedFor(m.input) })),
  );
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  const r = rng(seed);
  const bad: string[] = [];
  const codes = new Map<number, number>();
  let calls = 0;
  const stopAt = Date.now() + FUZZ_MS;
  const worker = async () => {
    while (Date.now() < stopAt) {
      const method = methods[r.int(methods.length)]!;
      const payloads = Array.from({ length: method.kind === 'client_streaming' ? 1 + r.int(3) : 1 }, () =>
        mutate(method.seed, r),
      );
      const outcome = await call(method.path, method.kind, payloads);
      calls++;
      codes.set(outcome.code, (codes.get(outcome.code) ?? 0) + 1);
      if (outcome.code === grpc.status.INTERNAL || outcome.code === grpc.status.UNKNOWN) {
        bad.push(
          `${method.path} [${payloads.map((p) => p.toString('hex')).join(', ')}] -> ${grpc.status[outcome.code]}: ${outcome.details}`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));

  if (process.env.FUZZ_VERBOSE)
    console.log({ seed, calls, codes: Object.fromEntries([...codes].map(([c, n]) => [grpc.status[c], n])) });
  expect(bad, `seed ${seed}`).toEqual([]);
  expect(calls).toBeGreaterThan(100);
  expect(codes.get(grpc.status.INVALID_ARGUMENT) ?? 0).toBeGreaterThan(0);
  // Still serving real requests.
  const caps = await server.clients.capabilities.getCapabilities({});
  expect(caps.cacheCapabilities?.digestFunctions.length).toBe(1);
  const data = Buffer.from('after the storm');
  const stored = await server.clients.cas.batchUpdateBlobs({ requests: [{ digest: digestOf(data), data }] });
  expect(stored.responses[0]!.status?.code).toBe(0);
}, 30_000);
