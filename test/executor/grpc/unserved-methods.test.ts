// A call to a method larder does not serve, against a real `larder executor` process at the default log level:
// answered UNIMPLEMENTED (by grpc-js, as before), logged once per method and client with both named, and counted
// in larder_grpc_calls_total. BuildStream probes `buildstream.v2.ReferenceStorage/Status` this way.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrape, sample } from '../../helpers/prometheus.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';

const PROBE = '/buildstream.v2.ReferenceStorage/Status';
const LOGSTREAM = '/build.bazel.remote.logstream.v1.LogStreamService/CreateLogStream';
const id = (b: Buffer) => b;

describe('calls to methods larder does not serve', () => {
  let executor: ExecutorProcess;
  let metricsUrl: string;
  let client: grpc.Client;

  beforeAll(async () => {
    const dir = reachableTempDir('larder-unserved-');
    executor = await startExecutorProcess(
      ['--store', `disk:${dir}/store`, '--workers', '0', '--metrics-listen', '127.0.0.1:0', '--log-level', 'info'],
      { LARDER_LOG_FORMAT: 'json' },
    );
    for (let i = 0; i < 100 && !/metrics on /.test(executor.output()); i++)
      await new Promise((resolve) => setTimeout(resolve, 100));
    metricsUrl = /larder executor metrics on (\S+)\/metrics/.exec(executor.output())![1]!;
    client = new grpc.Client(`127.0.0.1:${executor.port}`, grpc.credentials.createInsecure());
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await executor?.stop();
  });

  const call = (path: string) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        path,
        id,
        id,
        Buffer.alloc(0),
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (err) => resolve(err),
      ),
    );

  /** The log lines about unserved methods, parsed (the process logs JSON here). */
  const unservedLines = () =>
    executor
      .output()
      .split('\n')
      .filter((line) => line.includes('does not serve'))
      .map((line) => JSON.parse(line) as { level: string; fields: { method: string; client: string } });

  it('answers UNIMPLEMENTED, logs method and client once per pair, and counts every call', async () => {
    for (let i = 0; i < 3; i++) expect((await call(PROBE))?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect((await call(LOGSTREAM))?.code).toBe(grpc.status.UNIMPLEMENTED);
    // A served method for contrast: no such line for it.
    const health = await call('/grpc.health.v1.Health/Check');
    expect(health).toBeNull();

    const metrics = await scrape(`${metricsUrl}/metrics`);
    expect(sample(metrics, 'larder_grpc_calls_total', { method: PROBE, code: 'UNIMPLEMENTED' })).toBe(3);
    expect(sample(metrics, 'larder_grpc_calls_total', { method: LOGSTREAM, code: 'UNIMPLEMENTED' })).toBe(1);

    const lines = unservedLines();
    expect(lines.map((l) => l.fields.method).sort()).toEqual([LOGSTREAM, PROBE]);
    for (const line of lines) {
      expect(line.level).toBe('WARN');
      expect(line.fields.client).toMatch(/127\.0\.0\.1$/);
    }
  }, 30_000);
});
