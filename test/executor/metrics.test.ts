/**
 * The executor's `/metrics` on its `--metrics-listen` address: real gRPC traffic (uploads, a batch read with a
 * hit and a miss, an action-cache miss, a wrong hash, a wrong password, one executed action) moves the gRPC,
 * cache, byte, refusal and execution figures by exactly what it should.
 */
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Code } from '../../executor/reapi/grpc-status.ts';
import { DigestSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { checkHistogramGrowth, delta, LATENCY_BOUNDS, parseExposition, sample, scrape } from '../helpers/prometheus.ts';
import { ActionFixture } from './execution/fixture.ts';
import { codeOf, reachableTempDir, startTestServer, type TestServer } from './helpers.ts';

let server: TestServer;
let fx: ActionFixture;
let metricsUrl: string;

beforeAll(async () => {
  const dir = reachableTempDir('larder-executor-metrics-');
  writeFileSync(join(dir, 'htpasswd'), `ci:{SHA}${createHash('sha1').update('ci-password').digest('base64')}\n`);
  writeFileSync(join(dir, 'larder.json'), JSON.stringify({ auth: { anonymous: ['read', 'write', 'execute'] } }));
  server = await startTestServer({
    args: [
      '--metrics-listen',
      '127.0.0.1:0',
      '--htpasswd',
      join(dir, 'htpasswd'),
      '--config',
      join(dir, 'larder.json'),
      '--concurrency',
      '2',
    ],
  });
  fx = new ActionFixture(server.clients);
  metricsUrl = `${server.executor.metricsUrl}/metrics`;
});
afterAll(async () => {
  await server?.stop();
});

const digestOf = (data: Uint8Array) =>
  create(DigestSchema, { hash: createHash('sha256').update(data).digest('hex'), sizeBytes: BigInt(data.byteLength) });

it('counts gRPC calls, cache requests per blob, bytes, refusals and executed actions', async () => {
  const before = await scrape(metricsUrl);
  const present = Buffer.from('present blob');
  const absent = Buffer.from('absent blob');
  await fx.upload(present);
  const read = await server.clients.cas.batchReadBlobs({ digests: [digestOf(present), digestOf(absent)] });
  expect(read.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.NOT_FOUND]);
  expect((await codeOf(server.clients.ac.getActionResult({ actionDigest: digestOf(absent) }))).code).toBe(
    Code.NOT_FOUND,
  );
  const wrong = await server.clients.cas.batchUpdateBlobs({ requests: [{ digest: digestOf(absent), data: present }] });
  expect(wrong.responses[0]?.status?.code).toBe(Code.INVALID_ARGUMENT);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Basic ${btoa('ci:wrong-password')}`);
  expect((await codeOf(server.clients.cas.findMissingBlobs({ blobDigests: [] }, { metadata }))).code).toBe(
    Code.UNAUTHENTICATED,
  );
  const action = await fx.action({ command: { arguments: ['/bin/sh', '-c', 'echo ok'] } });
  const { response } = await fx.execute(action);
  expect(response.result?.exitCode).toBe(0);
  const after = await scrape(metricsUrl);
  const moved = delta(before, after);

  const requests = (method: string, kind: string, outcome: string) =>
    moved('larder_requests_total', { protocol: 'grpc', method, kind, outcome });
  expect(requests('BatchReadBlobs', 'cas', 'hit')).toBe(1);
  expect(requests('BatchReadBlobs', 'cas', 'miss')).toBe(1);
  expect(requests('GetActionResult', 'ac', 'miss')).toBe(1);
  expect(requests('BatchUpdateBlobs', 'cas', 'refused')).toBe(1);
  // present, then the action's Command, input root and Action: four blobs in three calls.
  expect(requests('BatchUpdateBlobs', 'cas', 'stored')).toBe(4);
  expect(moved('larder_grpc_calls_total', { method: 'BatchUpdateBlobs', code: 'OK' })).toBe(5);
  expect(moved('larder_grpc_calls_total', { method: 'GetActionResult', code: 'NOT_FOUND' })).toBe(1);
  expect(moved('larder_grpc_calls_total', { method: 'FindMissingBlobs', code: 'UNAUTHENTICATED' })).toBe(1);
  expect(moved('larder_grpc_calls_total', { method: 'Execute', code: 'OK' })).toBe(1);
  expect(moved('larder_auth_refusals_total', { protocol: 'grpc', reason: 'unauthenticated' })).toBe(1);
  expect(moved('larder_bytes_total', { protocol: 'grpc', direction: 'in' })).toBeGreaterThan(present.byteLength);
  expect(moved('larder_bytes_total', { protocol: 'grpc', direction: 'out' })).toBeGreaterThan(present.byteLength);

  expect(moved('larder_actions_total', { outcome: 'success' })).toBe(1);
  expect(moved('larder_action_duration_seconds_count', { outcome: 'success' })).toBe(1);
  // The queue the action went through (it asked for no platform: `any`), empty again and waited on by nothing.
  expect(after.get('larder_execution_queued{platform="any"}')).toBe(0);
  expect(after.get('larder_execution_oldest_queued_seconds{platform="any"}')).toBe(0);
  expect(sample(after, 'larder_execution_running')).toBe(0);
  const workers = [...after].filter(([key]) => key.startsWith('larder_workers{'));
  expect(workers).toHaveLength(1);
  expect(workers[0]![0]).toMatch(/Arch=amd64.*OSFamily=linux/i);
  expect(workers[0]![1]).toBe(1);
  expect(sample(after, 'process_cpu_seconds_total')).toBeGreaterThan(0);
});

it('exposes the store latency histogram as prom-client writes it, growing by exactly the operations made', async () => {
  const beforeText = await (await fetch(metricsUrl)).text();
  const blobs = [Buffer.from('histogram blob one'), Buffer.from('histogram blob two')];
  const absent = Buffer.from('histogram blob never uploaded');
  const stored = await server.clients.cas.batchUpdateBlobs({
    requests: blobs.map((data) => ({ digest: digestOf(data), data })),
  });
  expect(stored.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.OK]);
  const read = await server.clients.cas.batchReadBlobs({ digests: [...blobs, absent].map(digestOf) });
  expect(read.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.OK, Code.NOT_FOUND]);
  const afterText = await (await fetch(metricsUrl)).text();

  const series = checkHistogramGrowth(beforeText, afterText, 'larder_store_operation_seconds', LATENCY_BOUNDS);
  expect(series.map((s) => s.labels)).toContain('store="disk",tier="0",operation="get",result="hit"');
  const moved = delta(parseExposition(beforeText), parseExposition(afterText));
  const ops = (operation: string, result: string) =>
    moved('larder_store_operation_seconds_count', { store: 'disk', tier: '0', operation, result });
  expect(ops('put', 'ok')).toBe(2);
  expect(ops('get', 'hit')).toBe(2);
  expect(ops('get', 'miss')).toBe(1);
  expect(ops('get', 'error') + ops('put', 'error') + ops('stat', 'error')).toBe(0);
});

it('counts each blob of a batch read whose blobs are all found, as a cache hit and a store hit', async () => {
  const blobs = ['all found one', 'all found two', 'all found three'].map((s) => Buffer.from(s));
  for (const blob of blobs) await fx.upload(blob);
  const before = await scrape(metricsUrl);
  const read = await server.clients.cas.batchReadBlobs({ digests: blobs.map(digestOf) });
  expect(read.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.OK, Code.OK]);
  const moved = delta(before, await scrape(metricsUrl));
  expect(
    moved('larder_requests_total', { protocol: 'grpc', method: 'BatchReadBlobs', kind: 'cas', outcome: 'hit' }),
  ).toBe(3);
  expect(
    moved('larder_store_operation_seconds_count', { store: 'disk', tier: '0', operation: 'get', result: 'hit' }),
  ).toBe(3);
});

it('serves /metrics to readers only; /healthz stays open', async () => {
  const wrong = { authorization: `Basic ${btoa('ci:wrong-password')}` };
  expect((await fetch(metricsUrl, { headers: wrong })).status).toBe(401);
  expect((await fetch(`${server.executor.metricsUrl}/healthz`, { headers: wrong })).status).toBe(200);
});
