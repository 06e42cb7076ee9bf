/** gRPC clients that send the same metadata (credentials, Bazel's RequestMetadata) with every call. */
import type * as grpc from '@grpc/grpc-js';

/** The same client with `metadata` added to every call. */
export function withMetadata<T extends object>(client: T, metadata: grpc.Metadata): T {
  return new Proxy(client, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function' || name === 'close') return value;
      return (request: unknown, options: { metadata?: unknown } = {}) =>
        (value as (r: unknown, o: unknown) => unknown).call(target, request, { ...options, metadata });
    },
  });
}
