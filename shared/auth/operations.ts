/**
 * Which role each operation needs: the one table both transports consult. The HTTP edge looks up its
 * request method; the gRPC executor looks up the full method path it is serving. An operation missing
 * from the table needs `write`, so a new mutating call can never slip through as a read.
 */
export type Role = 'read' | 'write' | 'execute' | 'operate';

export const ROLES: readonly Role[] = ['read', 'write', 'execute', 'operate'];

/**
 * The roles of everyone where nothing authenticates (no authenticator configured): all but `operate`, so that
 * even on an open server a caller sees and cancels only the operations it waits on.
 */
export const OPEN_ROLES: readonly Role[] = ['read', 'write', 'execute'];

/**
 * No method needs `operate`: it widens what the `execute` methods reach. A caller with it (and `execute`) may
 * get, wait on and cancel every execution operation, not only those it waits on itself (executor/execution/caller.ts).
 */
export const OPERATOR_ROLE: Role = 'operate';

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

const CAS = '/build.bazel.remote.execution.v2.ContentAddressableStorage';
const AC = '/build.bazel.remote.execution.v2.ActionCache';
const CAPABILITIES = '/build.bazel.remote.execution.v2.Capabilities';
const EXECUTION = '/build.bazel.remote.execution.v2.Execution';
const BYTESTREAM = '/google.bytestream.ByteStream';
const OPERATIONS = '/google.longrunning.Operations';
const FETCH = '/build.bazel.remote.asset.v1.Fetch';
const PUSH = '/build.bazel.remote.asset.v1.Push';

export const OPERATION_ROLES: Readonly<Record<string, Role>> = {
  // Bazel's HTTP cache protocol (edge/app.ts): reads are GET/HEAD, every upload is a PUT.
  GET: 'read',
  HEAD: 'read',
  PUT: 'write',

  // REAPI v2 over gRPC (executor/): keyed by the method path gRPC reports.
  [`${CAPABILITIES}/GetCapabilities`]: 'read',
  [`${CAS}/FindMissingBlobs`]: 'read',
  [`${CAS}/BatchReadBlobs`]: 'read',
  [`${CAS}/GetTree`]: 'read',
  [`${CAS}/BatchUpdateBlobs`]: 'write',
  [`${AC}/GetActionResult`]: 'read',
  [`${AC}/UpdateActionResult`]: 'write',
  [`${BYTESTREAM}/Read`]: 'read',
  [`${BYTESTREAM}/Write`]: 'write',
  // Only an uploader has a reason to ask how far its upload got.
  [`${BYTESTREAM}/QueryWriteStatus`]: 'write',
  [`${EXECUTION}/Execute`]: 'execute',
  [`${EXECUTION}/WaitExecution`]: 'execute',
  // Operations exist only for executions, so following or cancelling one is part of executing; which
  // operations a caller may reach is decided per operation (its waiters, or OPERATOR_ROLE).
  [`${OPERATIONS}/GetOperation`]: 'execute',
  [`${OPERATIONS}/CancelOperation`]: 'execute',
  [`${OPERATIONS}/ListOperations`]: 'execute',
  [`${OPERATIONS}/DeleteOperation`]: 'execute',
  [`${OPERATIONS}/WaitOperation`]: 'execute',
  // Remote Asset API: fetching is a read. It stores only what an allow-listed origin served (checked against the
  // request's checksum when it has one), never bytes of the caller's, so a read-only CI token can use downloads.
  // Pushing says what a URI names without any check against an origin: a writer's call.
  [`${FETCH}/FetchBlob`]: 'read',
  [`${FETCH}/FetchDirectory`]: 'read',
  [`${PUSH}/PushBlob`]: 'write',
  [`${PUSH}/PushDirectory`]: 'write',
};

/** The role `operation` (an HTTP method or a gRPC method path) needs; unknown operations need `write`. */
export function requiredRole(operation: string): Role {
  return Object.hasOwn(OPERATION_ROLES, operation) ? OPERATION_ROLES[operation]! : 'write';
}
