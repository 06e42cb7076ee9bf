/**
 * A class's prototype inside grpc-js, for the modules that wrap one of its methods (in-place-frames.ts,
 * lent-frames.ts). It is loaded as grpc-js's own module instance (the package's entry point requires these very
 * files), so a wrap reaches the code that runs. Undefined when grpc-js no longer has that class with that method:
 * the caller then leaves grpc-js as it is.
 */
import { createRequire } from 'node:module';

export function grpcJsPrototype<T>(file: string, className: string, method: string): T | undefined {
  try {
    const internals = createRequire(import.meta.url)(`@grpc/grpc-js/build/src/${file}`) as Record<
      string,
      { prototype?: Record<string, unknown> } | undefined
    >;
    const prototype = internals[className]?.prototype;
    return typeof prototype?.[method] === 'function' ? (prototype as T) : undefined;
  } catch {
    return undefined;
  }
}
