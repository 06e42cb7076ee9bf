/**
 * Bazel's RequestMetadata (tool, invocation id, action id, mnemonic, target), as log fields. Over gRPC it is the
 * binary header `build.bazel.remote.execution.v2.requestmetadata-bin`; over HTTP the same header carries it
 * base64-encoded (the gRPC convention for binary headers) when a client or proxy sends it. A missing or malformed
 * value gives no fields: it never changes what a request means.
 */
import { fromBinary } from '@bufbuild/protobuf';
import type { LogFields } from './log.ts';
import {
  type RequestMetadata,
  RequestMetadataSchema,
} from './proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

export const REQUEST_METADATA_KEY = 'build.bazel.remote.execution.v2.requestmetadata-bin';

export function decodeRequestMetadata(bytes: Uint8Array): RequestMetadata | null {
  try {
    return fromBinary(RequestMetadataSchema, bytes);
  } catch {
    return null;
  }
}

/** The header's value as sent over HTTP (base64, padded or not), decoded; null when absent or malformed. */
export function requestMetadataFromHeader(value: string | null | undefined): RequestMetadata | null {
  if (value === null || value === undefined || value === '') return null;
  try {
    const binary = atob(
      value
        .replace(/-/g, '+')
        .replace(/_/g, '/')
        .padEnd(Math.ceil(value.length / 4) * 4, '='),
    );
    return decodeRequestMetadata(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
}

/** tool, invocation, action, mnemonic and target, each only when set. */
export function requestMetadataFields(meta: RequestMetadata | null): LogFields {
  if (meta === null) return {};
  const tool = meta.toolDetails;
  return {
    tool: tool ? `${tool.toolName}/${tool.toolVersion}` : undefined,
    invocation: meta.toolInvocationId || undefined,
    action: meta.actionId || undefined,
    mnemonic: meta.actionMnemonic || undefined,
    target: meta.targetId || undefined,
  };
}
