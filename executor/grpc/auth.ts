/**
 * The executor's side of authentication, the twin of edge/auth.ts: each gRPC call hands its `authorization`
 * metadata and its method path to the same access gate (shared/auth/gate.ts), which looks the path up in the
 * one operation table. A refusal becomes a LarderError, so the status comes from the one mapping in
 * grpc-status.ts: UNAUTHENTICATED, PERMISSION_DENIED or UNAVAILABLE.
 *
 * gRPC has no WWW-Authenticate; clients that refresh credentials (Bazel with a credential helper) do so on
 * the UNAUTHENTICATED status itself, so the gate's challenges are not sent.
 */
import type { Principal } from '../../shared/auth/authenticator.ts';
import type { AccessGate } from '../../shared/auth/gate.ts';
import { requiredRole } from '../../shared/auth/operations.ts';
import { LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import { ActionCache, Execution } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { CallContext } from './adapt.ts';

/** An `authorize` hook for the adapter (grpc/adapt.ts) that asks `gate` about every call. */
export function authorizeCalls(
  gate: AccessGate,
  log: Logger,
  metrics?: Metrics,
): (ctx: CallContext) => Promise<Principal> {
  return async (ctx) => {
    const values = ctx.metadata.get('authorization');
    // Two credentials (say a --remote_header and a credential helper) could each be the one that counts;
    // picking one silently would make access depend on header order.
    if (values.length > 1) {
      metrics?.authRefused('grpc', 'unauthenticated');
      throw refuse(log, ctx, 'unauthenticated', 'more than one authorization value was sent');
    }
    const value = values[0];
    const decision = await gate.check(typeof value === 'string' ? value : undefined, ctx.path);
    if (decision.allowed) return decision.principal;
    metrics?.authRefused('grpc', decision.code);
    throw refuse(log, ctx, decision.code, decision.message, decision.subject);
  };
}

/** Logs a refusal with its reason and subject, never the credentials, and makes the error that ends the call. */
function refuse(
  log: Logger,
  ctx: CallContext,
  code: 'unauthenticated' | 'permission_denied' | 'unavailable',
  message: string,
  subject?: string,
): LarderError {
  const fields = { rpc: ctx.path, subject, reason: message };
  if (code === 'unauthenticated') log.debug('refused: not authenticated', fields);
  else if (code === 'permission_denied') log.info('refused: permission denied', fields);
  else log.warn('refused: authentication unavailable', fields);
  return new LarderError(code, message);
}

const UPDATE_ACTION_RESULT = `/${ActionCache.typeName}/${ActionCache.method.updateActionResult.name}`;

/**
 * Whether the caller may write the action cache: what GetCapabilities reports as `update_enabled`, so that
 * a reader's Bazel does not try uploads that would be refused. The role comes from the operation table, so
 * it cannot drift from the check UpdateActionResult itself gets. Without a gate (principal null) everyone may.
 */
export function mayUpdateActionCache(ctx: CallContext): boolean {
  return ctx.principal === null || ctx.principal.roles.has(requiredRole(UPDATE_ACTION_RESULT));
}

const EXECUTE = `/${Execution.typeName}/${Execution.method.execute.name}`;

/** Whether the caller may execute actions: what GetCapabilities reports as `exec_enabled` (with workers). */
export function mayExecute(ctx: CallContext): boolean {
  return ctx.principal === null || ctx.principal.roles.has(requiredRole(EXECUTE));
}
