/**
 * Wraps one method of a class inside grpc-js, once per process, for the modules that change how grpc-js frames or
 * decodes messages (in-place-frames.ts, lent-frames.ts). The class is loaded as grpc-js's own module instance (the
 * package's entry point requires these very files), so the wrap reaches the code that runs. When grpc-js no longer
 * has that class with that method, nothing is wrapped and the caller leaves grpc-js as it is.
 */
import { createRequire } from 'node:module';

/** Marks a prototype whose method is wrapped already, per wrapped method. */
const wrapped = new WeakMap<object, Set<string>>();

/**
 * Replaces `className.prototype[method]` in grpc-js's `file` with `wrap(original)`, unless that was done already;
 * returns whether the method is wrapped now.
 */
export function wrapGrpcJsMethod<T extends (...args: never[]) => unknown>(
  file: string,
  className: string,
  method: string,
  wrap: (original: T) => T,
): boolean {
  const prototype = grpcJsPrototype(file, className, method);
  if (prototype === undefined) return false;
  const done = wrapped.get(prototype) ?? new Set<string>();
  if (done.has(method)) return true;
  prototype[method] = wrap(prototype[method] as T);
  done.add(method);
  wrapped.set(prototype, done);
  return true;
}

function grpcJsPrototype(file: string, className: string, method: string): Record<string, unknown> | undefined {
  try {
    const internals = createRequire(import.meta.url)(`@grpc/grpc-js/build/src/${file}`) as Record<
      string,
      { prototype?: Record<string, unknown> } | undefined
    >;
    const prototype = internals[className]?.prototype;
    return typeof prototype?.[method] === 'function' ? prototype : undefined;
  } catch {
    return undefined;
  }
}
