// Bazel's request metadata header: decoded when well-formed, ignored (never an error) otherwise.
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { expect, it } from 'vitest';
import { logCalls, REQUEST_METADATA_KEY, requestMetadata } from '../../executor/grpc/request-metadata.ts';
import type { LogFields } from '../../shared/log.ts';
import { RequestMetadataSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

const sample = create(RequestMetadataSchema, {
  toolDetails: { toolName: 'bazel', toolVersion: '4.2.3' },
  toolInvocationId: '8d1d6c2e-0000-4000-8000-000000000001',
  actionId: 'abc123',
  actionMnemonic: 'Genrule',
  targetId: '//:report',
});

it('decodes the binary header and logs tool, invocation, action, mnemonic and target at debug', () => {
  const metadata = new grpc.Metadata();
  metadata.set(REQUEST_METADATA_KEY, Buffer.from(toBinary(RequestMetadataSchema, sample)));
  expect(requestMetadata(metadata)?.toolInvocationId).toBe(sample.toolInvocationId);

  const lines: Array<[string, LogFields | undefined]> = [];
  const log = { debug: (m: string, f?: LogFields) => lines.push([m, f]), info() {}, warn() {}, error() {} };
  logCalls(log)({ path: '/x.Y/Z', metadata, signal: new AbortController().signal, principal: null });
  expect(lines).toEqual([
    [
      'call',
      {
        rpc: '/x.Y/Z',
        tool: 'bazel/4.2.3',
        invocation: sample.toolInvocationId,
        action: 'abc123',
        mnemonic: 'Genrule',
        target: '//:report',
      },
    ],
  ]);
});

it('ignores a missing or malformed header', () => {
  expect(requestMetadata(new grpc.Metadata())).toBeNull();
  const bad = new grpc.Metadata();
  bad.set(REQUEST_METADATA_KEY, Buffer.from([0xff, 0xff, 0xff]));
  expect(requestMetadata(bad)).toBeNull();
});
