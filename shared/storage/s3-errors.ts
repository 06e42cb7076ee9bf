/**
 * What an AWS SDK failure means for a client: the one place S3 errors get LarderError codes.
 *
 *   timeouts (ours or the SDK's)                 → 'timeout'      (edge: 504)
 *   5xx, throttling, refused/reset connections   → 'unavailable'  (edge: 503), worth retrying later
 *   403, a missing bucket, other 4xx             → 'internal'     (edge: 500): larder is misconfigured
 * Errors that already are LarderErrors (a verifier rejecting the body, a client that went away) pass unchanged.
 */
import { LarderError } from '../errors.ts';

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
]);
const THROTTLED = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
]);

/** True for the answers that mean "no such object" (HeadObject has no body, so it only says NotFound). */
export function isMissing(err: unknown): boolean {
  const e = err as SdkError;
  return (
    e?.name === 'NoSuchKey' ||
    e?.name === 'NotFound' ||
    (e?.$metadata?.httpStatusCode === 404 && e?.name !== 'NoSuchBucket')
  );
}

/** `what` names the operation and object ("GET ac/1f2e…"), so the client's message says what failed. */
export function s3Error(err: unknown, what: string, timedOut: boolean): LarderError {
  if (err instanceof LarderError) return err;
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const detail = `${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
  // node:http calls a reset connection a "TimeoutError" too: look at the errno first.
  if (!timedOut && NETWORK_CODES.has(e.code ?? ''))
    return new LarderError('unavailable', `s3: ${what} failed: ${detail}`, { cause: err });
  if (
    timedOut ||
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    e.code === 'ETIMEDOUT' ||
    e.name === 'RequestTimeout'
  ) {
    return new LarderError('timeout', `s3: ${what} timed out: ${detail}`, { cause: err });
  }
  if (e.name === 'NoSuchBucket')
    return new LarderError('internal', `s3: ${what}: the bucket does not exist`, { cause: err });
  if (status === 403) {
    return new LarderError(
      'internal',
      `s3: ${what}: access denied; check the credentials and that they may get, put, list and abort: ${detail}`,
      { cause: err },
    );
  }
  const transient = status === undefined || status >= 500 || status === 429 || THROTTLED.has(e.name ?? '');
  return new LarderError(transient ? 'unavailable' : 'internal', `s3: ${what} failed: ${detail}`, { cause: err });
}
