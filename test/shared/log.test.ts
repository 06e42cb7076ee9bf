/**
 * Logs of real `larder edge` (Node and Deno) and `larder executor` processes whose stdout is a pipe: every
 * line on stderr is a JSON object (time, level, message, fields), each request's line carries Bazel's
 * invocation and action ids, and no password reaches the log. The readable text format is checked in-process.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../shared/log.ts';
import { RequestMetadataSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { REQUEST_METADATA_KEY } from '../../shared/request-metadata.ts';
import { startEdgeProcess, tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { randomBlob } from '../helpers/http.ts';
import { clientsFor, codeOf, startExecutorProcess } from '../executor/helpers.ts';

const runtimes = edgeRuntimes();
const INVOCATION = '6f1c9a52-7d1e-4c55-9d2b-0a1b2c3d4e5f';
const ACTION = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9';
const PASSWORD = 'ci-secret-password';
const metadataBytes = () =>
  toBinary(
    RequestMetadataSchema,
    create(RequestMetadataSchema, {
      toolDetails: { toolName: 'bazel', toolVersion: '7.4.0' },
      toolInvocationId: INVOCATION,
      actionId: ACTION,
      actionMnemonic: 'CppCompile',
    }),
  );

interface JsonLine {
  '@timestamp': string;
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

/** Every line but the listening line (stdout, the start-up contract scripts wait for) must be a JSON object. */
function jsonLines(output: string): JsonLine[] {
  return output
    .split('\n')
    .filter((line) => line !== '' && !/ listening on | metrics on /.test(line))
    .map((line) => {
      const parsed = JSON.parse(line) as JsonLine;
      expect(Object.keys(parsed)).toEqual(expect.arrayContaining(['@timestamp', 'level', 'message', 'fields']));
      expect(Date.parse(parsed['@timestamp']), parsed['@timestamp']).not.toBeNaN();
      return parsed;
    });
}

function setUpAuth(dir: string): string[] {
  writeFileSync(join(dir, 'htpasswd'), `ci:{SHA}${createHash('sha1').update(PASSWORD).digest('base64')}\n`);
  writeFileSync(
    join(dir, 'larder.json'),
    JSON.stringify({ auth: { anonymous: ['read'], htpasswd: { users: { ci: ['write'] } } } }),
  );
  return ['--htpasswd', join(dir, 'htpasswd'), '--config', join(dir, 'larder.json'), '--log-level', 'debug'];
}

describe.each(runtimes)('JSON logs of the edge on %s', (runtime) => {
  it('writes one JSON object per line, with the invocation and action ids on the request line', async () => {
    const dir = tempDir('larder-log-');
    // LARDER_LOG_FORMAT empty: the default (auto), which is JSON because stdout is a pipe.
    const edge = await startEdgeProcess({
      runtime,
      args: ['--store', `disk:${dir.path}/blobs`, ...setUpAuth(dir.path)],
      env: { LARDER_LOG_FORMAT: '' },
    });
    try {
      const blob = randomBlob(1000);
      const put = await fetch(`${edge.url}/cas/${blob.hash}`, {
        method: 'PUT',
        body: blob.data,
        headers: {
          authorization: `Basic ${btoa(`ci:${PASSWORD}`)}`,
          [REQUEST_METADATA_KEY]: Buffer.from(metadataBytes()).toString('base64'),
        },
      });
      expect(put.status).toBe(200);
      const refused = await fetch(`${edge.url}/cas/${blob.hash}`, {
        method: 'PUT',
        body: blob.data,
        headers: { authorization: `Basic ${btoa(`ci:${PASSWORD}x`)}` },
      });
      expect(refused.status).toBe(401);
      await edge.waitForOutput(/"message":"request".*"status":401/);
    } finally {
      await edge.stop();
      dir.remove();
    }
    const lines = jsonLines(edge.output());
    const request = lines.find(
      (line) => line.message === 'request' && line.fields.method === 'PUT' && line.fields.status === 200,
    );
    expect(request?.fields).toMatchObject({
      invocation: INVOCATION,
      action: ACTION,
      tool: 'bazel/7.4.0',
      mnemonic: 'CppCompile',
    });
    expect(request?.level).toBe('DEBUG');
    expect(lines.some((line) => line.message === 'refused: not authenticated' && line.fields.status === 401)).toBe(
      true,
    );
    expect(edge.output()).not.toContain(PASSWORD);
  });
});

describe('JSON logs of the executor', () => {
  it("writes one JSON object per line, with the invocation and action ids on each call's line", async () => {
    const dir = tempDir('larder-log-');
    const executor = await startExecutorProcess(
      ['--store', `disk:${dir.path}/blobs`, '--workers', '0', ...setUpAuth(dir.path)],
      { LARDER_LOG_FORMAT: '' },
    );
    const clients = clientsFor(`127.0.0.1:${executor.port}`);
    try {
      const metadata = new grpc.Metadata();
      metadata.set(REQUEST_METADATA_KEY, Buffer.from(metadataBytes()));
      metadata.set('authorization', `Basic ${btoa(`ci:${PASSWORD}x`)}`);
      const refused = await codeOf(clients.cas.findMissingBlobs({ blobDigests: [] }, { metadata }));
      expect(refused.code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      clients.close();
      await executor.stop();
      dir.remove();
    }
    const lines = jsonLines(executor.output());
    const call = lines.find((line) => line.message === 'call');
    expect(call?.fields).toMatchObject({
      rpc: '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs',
      invocation: INVOCATION,
      action: ACTION,
    });
    const failed = lines.find((line) => line.fields.code === 'UNAUTHENTICATED');
    expect(failed?.fields).toMatchObject({ invocation: INVOCATION, action: ACTION });
    expect(executor.output()).not.toContain(PASSWORD);
  });
});

describe('text logs', () => {
  afterEach(() => vi.restoreAllMocks());

  it('keeps the readable one-line format: time, level, message, key=value (quoted when it has spaces)', () => {
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: string) => lines.push(line));
    const log = createLogger('info', 'text');
    log.debug('hidden below the level');
    log.warn('disk {nearly} full', { path: '/var/cache/larder', free: 12, note: 'two words', gone: undefined });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN disk \{nearly\} full path=\/var\/cache\/larder free=12 note="two words"$/,
    );
  });
});
