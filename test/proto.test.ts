// Smoke test for the generated REAPI / Google protobuf code.
//
// Besides a round trip, it pins the wire encoding of a number of fields
// against hand-computed bytes: a wrong field number or type in
// shared/proto/**/*.proto changes the tag byte and fails here.

import { describe, expect, it } from 'vitest';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import {
  ActionCache,
  ActionResultSchema,
  ActionSchema,
  BatchReadBlobsResponse_ResponseSchema,
  BatchUpdateBlobsRequestSchema,
  CacheCapabilitiesSchema,
  Capabilities,
  CommandSchema,
  Command_OutputDirectoryFormat,
  Compressor_Value,
  ContentAddressableStorage,
  DigestFunction_Value,
  DigestSchema,
  DirectorySchema,
  ExecutedActionMetadataSchema,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  Execution,
  FileNodeSchema,
  FindMissingBlobsResponseSchema,
  OutputDirectorySchema,
  OutputFileSchema,
  RequestMetadataSchema,
  ServerCapabilitiesSchema,
  SymlinkAbsolutePathStrategy_Value,
} from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { OperationSchema } from '../shared/proto/gen/google/longrunning/operations_pb.ts';
import { ByteStream, WriteRequestSchema } from '../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { Code } from '../shared/proto/gen/google/rpc/code_pb.ts';
import { StatusSchema } from '../shared/proto/gen/google/rpc/status_pb.ts';

/** Lowercase hex with a space between bytes, e.g. "0a 02 61 62". */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

function enc<D extends DescMessage>(schema: D, init: MessageInitShape<D>): string {
  return hex(toBinary(schema, create(schema, init)));
}

// Digest{hash: "ab", size_bytes: 3} -> 0a 02 'a' 'b' 10 03
const DIGEST_AB3 = '0a 02 61 62 10 03';

describe('REAPI protobuf round trip', () => {
  it('encodes and decodes an ActionResult', () => {
    const result = create(ActionResultSchema, {
      outputFiles: [
        {
          path: 'bazel-out/k8-fastbuild/bin/hello',
          digest: { hash: 'a'.repeat(64), sizeBytes: 12345n },
          isExecutable: true,
        },
        { path: 'bazel-out/k8-fastbuild/bin/hello.txt', digest: { hash: 'b'.repeat(64), sizeBytes: 0n } },
      ],
      outputDirectories: [{ path: 'out/dir', treeDigest: { hash: 'c'.repeat(64), sizeBytes: 99n } }],
      exitCode: 3,
      stdoutDigest: { hash: 'd'.repeat(64), sizeBytes: 7n },
      stderrRaw: new TextEncoder().encode('oops\n'),
      executionMetadata: { worker: 'larder-test', virtualExecutionDuration: { seconds: 2n, nanos: 500 } },
    });

    const bytes = toBinary(ActionResultSchema, result);
    const back = fromBinary(ActionResultSchema, bytes);

    expect(back.exitCode).toBe(3);
    expect(back.outputFiles).toHaveLength(2);
    expect(back.outputFiles[0]?.path).toBe('bazel-out/k8-fastbuild/bin/hello');
    expect(back.outputFiles[0]?.isExecutable).toBe(true);
    expect(back.outputFiles[0]?.digest?.sizeBytes).toBe(12345n);
    expect(back.outputFiles[1]?.isExecutable).toBe(false);
    expect(back.outputDirectories[0]?.treeDigest?.hash).toBe('c'.repeat(64));
    expect(back.stdoutDigest?.hash).toBe('d'.repeat(64));
    expect(back.stdoutDigest?.sizeBytes).toBe(7n);
    expect(new TextDecoder().decode(back.stderrRaw)).toBe('oops\n');
    expect(back.executionMetadata?.worker).toBe('larder-test');
    expect(back.executionMetadata?.virtualExecutionDuration?.seconds).toBe(2n);
    // Re-encoding the decoded message is byte-identical (canonical form).
    expect(hex(toBinary(ActionResultSchema, back))).toBe(hex(bytes));
  });

  it('decodes hand-written bytes', () => {
    // ActionResult{exit_code: 1, stdout_digest: {hash: "ab", size_bytes: 3}}
    const bytes = new Uint8Array([0x20, 0x01, 0x32, 0x06, 0x0a, 0x02, 0x61, 0x62, 0x10, 0x03]);
    const r = fromBinary(ActionResultSchema, bytes);
    expect(r.exitCode).toBe(1);
    expect(r.stdoutDigest?.hash).toBe('ab');
    expect(r.stdoutDigest?.sizeBytes).toBe(3n);
  });
});

describe('REAPI wire encoding matches the upstream field numbers', () => {
  it('Digest', () => {
    expect(enc(DigestSchema, { hash: 'ab', sizeBytes: 3n })).toBe(DIGEST_AB3);
  });

  it('ActionResult', () => {
    const d = { hash: 'ab', sizeBytes: 3n };
    // output_files = 2 (LEN): OutputFile{path: "a"(1), is_executable(4)}
    expect(enc(ActionResultSchema, { outputFiles: [{ path: 'a', isExecutable: true }] })).toBe('12 05 0a 01 61 20 01');
    // output_directories = 3 (LEN)
    expect(enc(ActionResultSchema, { outputDirectories: [{ path: 'd' }] })).toBe('1a 03 0a 01 64');
    // exit_code = 4 (VARINT); negative int32 is sign-extended to 10 bytes
    expect(enc(ActionResultSchema, { exitCode: 1 })).toBe('20 01');
    expect(enc(ActionResultSchema, { exitCode: -1 })).toBe('20 ff ff ff ff ff ff ff ff ff 01');
    // stdout_raw = 5, stdout_digest = 6, stderr_raw = 7, stderr_digest = 8
    expect(enc(ActionResultSchema, { stdoutRaw: new Uint8Array([0x78]) })).toBe('2a 01 78');
    expect(enc(ActionResultSchema, { stdoutDigest: d })).toBe(`32 06 ${DIGEST_AB3}`);
    expect(enc(ActionResultSchema, { stderrRaw: new Uint8Array([0x78]) })).toBe('3a 01 78');
    expect(enc(ActionResultSchema, { stderrDigest: d })).toBe(`42 06 ${DIGEST_AB3}`);
    // execution_metadata = 9: ExecutedActionMetadata{worker(1): "w"}
    expect(enc(ActionResultSchema, { executionMetadata: { worker: 'w' } })).toBe('4a 03 0a 01 77');
    // output_file_symlinks = 10, output_directory_symlinks = 11, output_symlinks = 12
    expect(enc(ActionResultSchema, { outputFileSymlinks: [{ path: 's' }] })).toBe('52 03 0a 01 73');
    expect(enc(ActionResultSchema, { outputDirectorySymlinks: [{ path: 's' }] })).toBe('5a 03 0a 01 73');
    expect(enc(ActionResultSchema, { outputSymlinks: [{ path: 's', target: 't' }] })).toBe('62 06 0a 01 73 12 01 74');
    // Serialization follows field-number order, not declaration order.
    expect(enc(ActionResultSchema, { outputSymlinks: [{}], exitCode: 2, outputFiles: [{}] })).toBe('12 00 20 02 62 00');
  });

  it('OutputFile / FileNode / OutputDirectory', () => {
    // OutputFile: digest = 2, is_executable = 4, contents = 5, node_properties = 7
    expect(enc(OutputFileSchema, { isExecutable: true })).toBe('20 01');
    expect(enc(OutputFileSchema, { digest: { hash: 'ab', sizeBytes: 3n } })).toBe(`12 06 ${DIGEST_AB3}`);
    expect(enc(OutputFileSchema, { contents: new Uint8Array([1]) })).toBe('2a 01 01');
    expect(enc(OutputFileSchema, { nodeProperties: { unixMode: 0o755 } })).toBe(
      // NodeProperties.unix_mode = 3 (UInt32Value, unboxed to a number in TS)
      // -> UInt32Value{value(1): 493 = ed 03}
      '3a 05 1a 03 08 ed 03',
    );
    // FileNode: is_executable = 4, node_properties = 6
    expect(enc(FileNodeSchema, { name: 'f', isExecutable: true })).toBe('0a 01 66 20 01');
    expect(enc(FileNodeSchema, { nodeProperties: {} })).toBe('32 00');
    // OutputDirectory: tree_digest = 3, is_topologically_sorted = 4, root_directory_digest = 5
    expect(enc(OutputDirectorySchema, { treeDigest: { hash: 'ab', sizeBytes: 3n } })).toBe(`1a 06 ${DIGEST_AB3}`);
    expect(enc(OutputDirectorySchema, { isTopologicallySorted: true })).toBe('20 01');
    expect(enc(OutputDirectorySchema, { rootDirectoryDigest: {} })).toBe('2a 00');
  });

  it('Directory / Action / Command', () => {
    // Directory: files = 1, directories = 2, symlinks = 3, node_properties = 5
    expect(enc(DirectorySchema, { files: [{}], directories: [{}], symlinks: [{}], nodeProperties: {} })).toBe(
      '0a 00 12 00 1a 00 2a 00',
    );
    // Action: timeout = 6, do_not_cache = 7, salt = 9, platform = 10
    expect(
      enc(ActionSchema, { timeout: { seconds: 1n }, doNotCache: true, salt: new Uint8Array([0xab]), platform: {} }),
    ).toBe('32 02 08 01 38 01 4a 01 ab 52 00');
    // Command: arguments = 1, environment_variables = 2, working_directory = 6,
    // output_paths = 7, output_node_properties = 8, output_directory_format = 9
    expect(
      enc(CommandSchema, {
        arguments: ['x'],
        environmentVariables: [{ name: 'A', value: 'b' }],
        workingDirectory: 'w',
        outputPaths: ['o'],
        outputNodeProperties: ['p'],
        outputDirectoryFormat: Command_OutputDirectoryFormat.TREE_AND_DIRECTORY,
      }),
    ).toBe('0a 01 78 12 06 0a 01 41 12 01 62 32 01 77 3a 01 6f 42 01 70 48 02');
    // Deprecated Command fields: output_files = 3, output_directories = 4, platform = 5
    expect(enc(CommandSchema, { outputFiles: ['f'], outputDirectories: ['d'], platform: {} })).toBe(
      '1a 01 66 22 01 64 2a 00',
    );
  });

  it('ExecutedActionMetadata', () => {
    // worker_completed_timestamp = 4, auxiliary_metadata = 11, virtual_execution_duration = 12
    expect(enc(ExecutedActionMetadataSchema, { workerCompletedTimestamp: {} })).toBe('22 00');
    expect(enc(ExecutedActionMetadataSchema, { outputUploadCompletedTimestamp: {} })).toBe('52 00');
    expect(enc(ExecutedActionMetadataSchema, { auxiliaryMetadata: [{}] })).toBe('5a 00');
    const dur = create(DurationSchema, { seconds: 1n });
    expect(enc(ExecutedActionMetadataSchema, { virtualExecutionDuration: dur })).toBe('62 02 08 01');
  });

  it('Execute / ActionCache / CAS requests', () => {
    // ExecuteRequest: skip_cache_lookup = 3, action_digest = 6, digest_function = 9,
    // inline_output_files = 12
    expect(
      enc(ExecuteRequestSchema, {
        instanceName: 'i',
        skipCacheLookup: true,
        actionDigest: { hash: 'ab', sizeBytes: 3n },
        digestFunction: DigestFunction_Value.BLAKE3,
        inlineOutputFiles: ['f'],
      }),
    ).toBe(`0a 01 69 18 01 32 06 ${DIGEST_AB3} 48 09 62 01 66`);
    // ExecuteResponse: cached_result = 2, status = 3, server_logs = 4 (map), message = 5
    expect(enc(ExecuteResponseSchema, { cachedResult: true, message: 'm' })).toBe('10 01 2a 01 6d');
    expect(enc(ExecuteResponseSchema, { serverLogs: { k: { humanReadable: true } } })).toBe(
      // map entry {key(1): "k", value(2): LogFile{human_readable(2): true}}
      '22 07 0a 01 6b 12 02 10 01',
    );
    expect(enc(ExecuteResponseSchema, { status: { code: Code.DEADLINE_EXCEEDED } })).toBe('1a 02 08 04');
    // FindMissingBlobsResponse.missing_blob_digests = 2
    expect(enc(FindMissingBlobsResponseSchema, { missingBlobDigests: [{ hash: 'ab', sizeBytes: 3n }] })).toBe(
      `12 06 ${DIGEST_AB3}`,
    );
    // BatchUpdateBlobsRequest: requests = 2 {compressor = 3}, digest_function = 5
    expect(
      enc(BatchUpdateBlobsRequestSchema, {
        requests: [{ compressor: Compressor_Value.ZSTD }],
        digestFunction: DigestFunction_Value.SHA256,
      }),
    ).toBe('12 02 18 01 28 01');
    // BatchReadBlobsResponse.Response: status = 3, compressor = 4
    expect(
      enc(BatchReadBlobsResponse_ResponseSchema, { status: { code: 5 }, compressor: Compressor_Value.DEFLATE }),
    ).toBe('1a 02 08 05 20 02');
  });

  it('Capabilities', () => {
    // CacheCapabilities: digest_functions = 1 (packed), max_batch_total_size_bytes = 4,
    // symlink_absolute_path_strategy = 5, supported_compressors = 6 (packed),
    // supported_batch_update_compressors = 7 (packed)
    expect(
      enc(CacheCapabilitiesSchema, {
        digestFunctions: [DigestFunction_Value.SHA256, DigestFunction_Value.BLAKE3],
        actionCacheUpdateCapabilities: { updateEnabled: true },
        maxBatchTotalSizeBytes: 4194304n,
        symlinkAbsolutePathStrategy: SymlinkAbsolutePathStrategy_Value.ALLOWED,
        supportedCompressors: [Compressor_Value.ZSTD],
        supportedBatchUpdateCompressors: [Compressor_Value.ZSTD],
      }),
    ).toBe('0a 02 01 09 12 02 08 01 20 80 80 80 02 28 02 32 01 01 3a 01 01');
    // ServerCapabilities.high_api_version = 5 -> SemVer{major(1): 2, minor(2): 3}
    expect(enc(ServerCapabilitiesSchema, { highApiVersion: { major: 2, minor: 3 } })).toBe('2a 04 08 02 10 03');
    expect(enc(ServerCapabilitiesSchema, { lowApiVersion: { prerelease: 'x' } })).toBe('22 03 22 01 78');
    // RequestMetadata: tool_details = 1, tool_invocation_id = 3, configuration_id = 7
    expect(
      enc(RequestMetadataSchema, { toolDetails: { toolName: 'b' }, toolInvocationId: 'i', configurationId: 'c' }),
    ).toBe('0a 03 0a 01 62 1a 01 69 3a 01 63');
  });

  it('google.longrunning / google.bytestream / google.rpc', () => {
    // Operation{name(1): "n", done(3): true, error(4): Status{code(1): 1}}
    expect(enc(OperationSchema, { name: 'n', done: true, result: { case: 'error', value: { code: 1 } } })).toBe(
      '0a 01 6e 18 01 22 02 08 01',
    );
    // Status{code(1): 5, message(2): "x"}
    expect(enc(StatusSchema, { code: Code.NOT_FOUND, message: 'x' })).toBe('08 05 12 01 78');
    // WriteRequest{resource_name(1), write_offset(2), finish_write(3), data(10)}
    expect(
      enc(WriteRequestSchema, { resourceName: 'r', writeOffset: 1n, finishWrite: true, data: new Uint8Array([7]) }),
    ).toBe('0a 01 72 10 01 18 01 52 01 07');
  });
});

describe('service descriptors', () => {
  it('exposes the gRPC services with their full names and method kinds', () => {
    expect(Execution.typeName).toBe('build.bazel.remote.execution.v2.Execution');
    expect(Execution.method.execute.methodKind).toBe('server_streaming');
    expect(Execution.method.waitExecution.output).toBe(OperationSchema);
    expect(ActionCache.method.getActionResult.output).toBe(ActionResultSchema);
    expect(ContentAddressableStorage.typeName).toBe('build.bazel.remote.execution.v2.ContentAddressableStorage');
    expect(ContentAddressableStorage.methods.map((m) => m.name)).toEqual([
      'FindMissingBlobs',
      'BatchUpdateBlobs',
      'BatchReadBlobs',
      'GetTree',
    ]);
    expect(ContentAddressableStorage.method.getTree.methodKind).toBe('server_streaming');
    expect(Capabilities.method.getCapabilities.output).toBe(ServerCapabilitiesSchema);
    expect(ByteStream.typeName).toBe('google.bytestream.ByteStream');
    expect(ByteStream.method.read.methodKind).toBe('server_streaming');
    expect(ByteStream.method.write.methodKind).toBe('client_streaming');
  });
});
