/**
 * Who is asking about an operation, as the scheduler keys waiters: an authenticated principal by how it was
 * authenticated and its subject (`basic:alice`, `oidc:SUB`), so the same user is the same waiter on every
 * connection and every frontend of a fleet.
 *
 * Anonymous callers (no credentials, as on a server with no authenticator at all) have no name, so the only
 * thing that tells them apart is where they call from: `anonymous@ADDRESS`, the client's IP address without
 * its port. A Bazel that reconnects and calls WaitExecution comes from the same address and finds its
 * operation; another machine does not see it, nor cancel it. Callers sharing an address (one host, or a proxy
 * in front of larder) are one waiter: configure authentication where that matters.
 */
import { OPERATOR_ROLE } from '../../shared/auth/operations.ts';
import type { CallContext } from '../grpc/adapt.ts';
import type { Caller } from '../scheduler/scheduler.ts';

export function callerOf(ctx: CallContext): Caller {
  const principal = ctx.principal;
  const operator = principal?.roles.has(OPERATOR_ROLE) ?? false;
  if (principal !== null && principal.via !== 'anonymous')
    return { id: `${principal.via}:${principal.subject}`, operator };
  return { id: `anonymous@${addressOf(ctx.peer ?? 'unknown')}`, operator };
}

/** The address of a grpc-js peer string (`1.2.3.4:5678`, `::1:5678`, `::ffff:1.2.3.4:5678`), port and v4-mapping dropped. */
export function addressOf(peer: string): string {
  const address = /^(.*):\d+$/.exec(peer)?.[1] ?? peer;
  return address.replace(/^\[(.*)\]$/, '$1').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
}
