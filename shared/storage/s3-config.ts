/**
 * The `s3://BUCKET[/PREFIX][?OPTIONS]` store spec, checked once at start-up.
 *
 * Where the bucket is and who we are come from the AWS SDK's standard environment, so the same spec works
 * against AWS S3, MinIO and R2:
 *
 *   AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL   the endpoint (unset: AWS itself)
 *   AWS_REGION, else AWS_DEFAULT_REGION          the region (unset: us-east-1, which MinIO and R2 accept)
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY     credentials (read by the SDK's own provider chain, never parsed here)
 *   LARDER_S3_FORCE_PATH_STYLE=1                 http://endpoint/bucket/key instead of http://bucket.endpoint/key
 *
 * The query overrides them per store: `?endpoint=URL&region=R&path-style=1&timeout=20s`. `timeout` bounds one
 * S3 operation with all its retries; past it the client gets 504.
 */
import { LarderError } from '../errors.ts';
import { parseDuration } from '../duration.ts';

export interface S3Config {
  kind: 's3';
  bucket: string;
  /** Key prefix without leading or trailing '/', '' for none. */
  prefix: string;
  region: string;
  /** null: the SDK's default endpoint for the region (AWS). */
  endpoint: string | null;
  forcePathStyle: boolean;
  /** The most one S3 operation, retries included, may take. */
  timeoutMs: number;
}

type Env = Record<string, string | undefined>;

const QUERY_KEYS = ['endpoint', 'region', 'path-style', 'timeout'];
// S3's bucket naming rules (3–63 lowercase letters, digits, dots and hyphens), which MinIO and R2 share.
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Spec(spec: string, env: Env): S3Config {
  const match = /^s3:\/\/([^/?]*)([^?]*)(?:\?(.*))?$/.exec(spec);
  if (!match || !BUCKET.test(match[1]!)) {
    throw new LarderError(
      'invalid_argument',
      `invalid S3 store ${JSON.stringify(spec)}: expected s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=1&timeout=20s]`,
    );
  }
  const query = new URLSearchParams(match[3] ?? '');
  for (const name of query.keys()) {
    if (!QUERY_KEYS.includes(name)) {
      throw new LarderError(
        'invalid_argument',
        `unknown S3 store option ${JSON.stringify(name)} in ${JSON.stringify(spec)}: known are ${QUERY_KEYS.join(', ')}`,
      );
    }
  }
  const endpoint = query.get('endpoint') || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || null;
  if (endpoint !== null && !/^https?:\/\/[^/]+/.test(endpoint)) {
    throw new LarderError(
      'invalid_argument',
      `S3 endpoint must be an http:// or https:// URL, not ${JSON.stringify(endpoint)}`,
    );
  }
  return {
    kind: 's3',
    bucket: match[1]!,
    prefix: match[2]!.replace(/^\/+|\/+$/g, ''),
    region: query.get('region') || env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    endpoint,
    forcePathStyle: parseSwitch('path-style', query.get('path-style') ?? env.LARDER_S3_FORCE_PATH_STYLE ?? 'off'),
    timeoutMs: parseTimeout(query.get('timeout') ?? '20s'),
  };
}

export function describeS3(config: S3Config): string {
  const where = config.endpoint ?? 'AWS';
  return `s3://${config.bucket}/${config.prefix} (${where}, ${config.region}${config.forcePathStyle ? ', path-style' : ''}, timeout ${config.timeoutMs} ms)`;
}

function parseSwitch(name: string, value: string): boolean {
  if (['1', 'on', 'true', 'yes'].includes(value)) return true;
  if (['', '0', 'off', 'false', 'no'].includes(value)) return false;
  throw new LarderError('invalid_argument', `S3 ${name} must be on or off, not ${JSON.stringify(value)}`);
}

/** S3's operation timeout: a duration of at least 100 ms. */
function parseTimeout(text: string): number {
  const ms = parseDuration(text, 'S3 timeout');
  if (ms < 100)
    throw new LarderError('invalid_argument', `S3 timeout must be at least 100ms, not ${JSON.stringify(text)}`);
  return ms;
}
