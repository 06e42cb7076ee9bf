/**
 * The one error type larder throws on purpose. Every error carries a `code` from a closed set so that
 * the two places that talk to clients (the edge's error handler and the executor's gRPC status
 * mapping) can switch on it; nothing else maps errors to statuses.
 */
export type ErrorCode =
  | 'invalid_argument' // malformed request: bad hash, bad path, unparsable protobuf
  | 'digest_mismatch' // the bytes do not hash to the digest they were sent under
  | 'size_mismatch' // the bytes are not as long as declared
  | 'too_large' // over a configured limit
  | 'length_required' // an upload that does not say how long it is
  | 'not_found'
  | 'no_space' // the store cannot make room (full disk, budget smaller than the blob)
  | 'unavailable' // a backend cannot be reached right now; worth retrying
  | 'timeout' // a backend did not answer in time
  | 'aborted' // the client went away mid-transfer
  | 'unauthenticated'
  | 'permission_denied'
  | 'internal';

export class LarderError extends Error {
  override readonly name = 'LarderError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Prefixes context as the error bubbles up ("disk: …"), keeping the code. */
  wrap(context: string): LarderError {
    return new LarderError(this.code, `${context}: ${this.message}`, { cause: this });
  }
}

export function isLarderError(err: unknown, code?: ErrorCode): err is LarderError {
  return err instanceof LarderError && (code === undefined || err.code === code);
}

/**
 * An error with its causes, for the server's log only. Messages sent to clients leave out what only the
 * operator should see (file paths, in the disk store's causes); the log keeps it.
 */
export function errorForLog(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e !== undefined && parts.length < 5; e = (e as { cause?: unknown }).cause) {
    const message = e instanceof Error ? e.message : String(e);
    if (!parts.some((p) => p.includes(message))) parts.push(message);
    if (!(e instanceof Error)) break;
  }
  return parts.join(': caused by: ');
}
