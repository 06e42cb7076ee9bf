// Capabilities, health and configuration of `larder executor`, over a real gRPC channel.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExecutor } from '../../executor/start.ts';
import { parseExecutorConfig } from '../../executor/config/executor-options.ts';
import {
  Compressor_Value,
  DigestFunction_Value,
  SymlinkAbsolutePathStrategy_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { HealthCheckResponse_ServingStatus } from '../../shared/proto/gen/grpc/health/v1/health_pb.ts';
import { codeOf, startTestServer, type TestServer } from './helpers.ts';

describe('GetCapabilities and health', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ args: ['--max-batch-size', '2MiB'] });
  });
  afterAll(() => server.stop());

  it('advertises SHA256, AC updates, the batch limit, zstd and API 2.0–2.3', async () => {
    const caps = await server.clients.capabilities.getCapabilities({ instanceName: 'team-a' });
    const cache = caps.cacheCapabilities!;
    expect(cache.digestFunctions).toEqual([DigestFunction_Value.SHA256]);
    expect(cache.actionCacheUpdateCapabilities?.updateEnabled).toBe(true);
    expect(cache.maxBatchTotalSizeBytes).toBe(2n * 1024n * 1024n);
    expect(cache.symlinkAbsolutePathStrategy).toBe(SymlinkAbsolutePathStrategy_Value.ALLOWED);
    expect(cache.supportedCompressors).toEqual([Compressor_Value.ZSTD]);
    expect(cache.supportedBatchUpdateCompressors).toEqual([Compressor_Value.ZSTD]);
    expect(caps.executionCapabilities?.execEnabled).toBe(true);
    expect(caps.executionCapabilities?.digestFunction).toBe(DigestFunction_Value.SHA256);
    expect(caps.executionCapabilities?.executionPriorityCapabilities?.priorities).toMatchObject([
      { minPriority: -1000, maxPriority: 1000 },
    ]);
    expect([caps.lowApiVersion?.major, caps.lowApiVersion?.minor]).toEqual([2, 0]);
    expect([caps.highApiVersion?.major, caps.highApiVersion?.minor]).toEqual([2, 3]);
  });

  it('refuses an invalid instance name', async () => {
    const { code } = await codeOf(server.clients.capabilities.getCapabilities({ instanceName: '../etc' }));
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers grpc.health.v1 Check for the server and each service, NOT_FOUND for others', async () => {
    expect((await server.clients.health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const cas = await server.clients.health.check({
      service: 'build.bazel.remote.execution.v2.ContentAddressableStorage',
    });
    expect(cas.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await codeOf(server.clients.health.check({ service: 'nope.Service' }))).code).toBe(grpc.status.NOT_FOUND);
  });

  it('with --workers 0 answers UNIMPLEMENTED for Execution and does not advertise it', async () => {
    const frontend = await startTestServer({ args: ['--workers', '0'] });
    const caps = await frontend.clients.capabilities.getCapabilities({});
    expect(caps.executionCapabilities?.execEnabled ?? false).toBe(false);
    const client = new grpc.Client(frontend.address, grpc.credentials.createInsecure());
    const code = await new Promise<number>((resolve) => {
      const call = client.makeServerStreamRequest(
        '/build.bazel.remote.execution.v2.Execution/Execute',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
      );
      call.on('data', () => {});
      call.on('error', (err: grpc.ServiceError) => resolve(err.code));
      call.on('end', () => resolve(-1));
    });
    client.close();
    await frontend.stop();
    expect(code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

describe('parseExecutorConfig', () => {
  it('shares the edge rows and env twins, with its own listen default', () => {
    const config = parseExecutorConfig([], {
      LARDER_STORE: 'memory',
      LARDER_MAX_SIZE: '1GiB',
      LARDER_LOG_LEVEL: 'debug',
      HOME: '/h',
    });
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8980 });
    expect(config.store).toEqual({ kind: 'memory', maxBytes: 2 ** 30 });
    expect(config.logLevel).toBe('debug');
    expect(config.maxBatchBytes).toBe(4 * 2 ** 20);
    expect(config.tls).toBeNull();
  });

  it('takes TLS files as a pair and refuses half of one', () => {
    const config = parseExecutorConfig(['--tls-cert', 'c.pem', '--tls-key', 'k.pem'], { HOME: '/h' });
    expect(config.tls).toEqual({ certPath: 'c.pem', keyPath: 'k.pem' });
    expect(() => parseExecutorConfig(['--tls-cert', 'c.pem'], { HOME: '/h' })).toThrow(/go together/);
  });

  it('refuses to serve beyond loopback without --allow-anonymous', async () => {
    const config = parseExecutorConfig(['--listen', '0.0.0.0:0', '--store', 'memory', '--log-level', 'silent'], {
      HOME: '/h',
    });
    expect(config.auth.allowAnonymous).toBe(false);
    await expect(startExecutor(config, { announce: false })).rejects.toThrow(/--allow-anonymous/);
    expect(parseExecutorConfig(['--allow-anonymous'], { HOME: '/h' }).auth.allowAnonymous).toBe(true);
    expect(parseExecutorConfig([], { HOME: '/h', LARDER_ALLOW_ANONYMOUS: 'on' }).auth.allowAnonymous).toBe(true);
  });

  it('uses LARDER_EXECUTOR_LISTEN, not the edge listen variable', () => {
    const config = parseExecutorConfig([], {
      LARDER_LISTEN: '0.0.0.0:1',
      LARDER_EXECUTOR_LISTEN: '127.0.0.1:9000',
      HOME: '/h',
    });
    expect(config.listen.port).toBe(9000);
  });
});
