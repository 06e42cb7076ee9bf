/**
 * grpc.health.v1.Health/Check, for load balancers and probes. Everything this process serves is ready
 * once it listens, so the answer is SERVING for the server as a whole and for each service it offers,
 * and NOT_FOUND (as the health protocol prescribes) for any other name.
 */
import { LarderError } from '../../shared/errors.ts';
import { type Health, HealthCheckResponse_ServingStatus } from '../../shared/proto/gen/grpc/health/v1/health_pb.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';

export function healthService(services: readonly string[]): ServiceHandlers<typeof Health> {
  const known = new Set(['', ...services]);
  return {
    async check(request) {
      if (!known.has(request.service))
        throw new LarderError('not_found', `unknown service ${JSON.stringify(request.service)}`);
      return { status: HealthCheckResponse_ServingStatus.SERVING };
    },
  };
}
