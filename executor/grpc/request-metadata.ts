/**
 * Bazel attaches a RequestMetadata (tool, invocation id, action id, mnemonic, target) to every call as
 * the binary header `build.bazel.remote.execution.v2.requestmetadata-bin`. It is decoded here for the call's
 * log lines; a missing or malformed header is ignored, since it never changes what the call means.
 */
import type { Metadata } from '@grpc/grpc-js';
import type { LogFields, Logger } from '../../shared/log.ts';
import type { RequestMetadata } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { decodeRequestMetadata, REQUEST_METADATA_KEY, requestMetadataFields } from '../../shared/request-metadata.ts';

export { REQUEST_METADATA_KEY };

export function requestMetadata(metadata: Metadata): RequestMetadata | null {
  const value = metadata.get(REQUEST_METADATA_KEY)[0];
  return value instanceof Uint8Array ? decodeRequestMetadata(value) : null;
}

/** What the log fields are read from: the method's path and the call's metadata (a CallContext has both). */
export interface CallHeaders {
  readonly path: string;
  readonly metadata: Metadata;
}

/** The fields every log line about this call carries: the method, and Bazel's ids when it sent them. */
export function callFields(ctx: CallHeaders): LogFields {
  return { rpc: ctx.path, ...requestMetadataFields(requestMetadata(ctx.metadata)) };
}

/** An `onCall` hook that logs each call at debug level with who made it and for which action. */
export function logCalls(log: Logger): <Context extends CallHeaders>(ctx: Context) => void {
  return (ctx) => log.debug('call', callFields(ctx));
}
