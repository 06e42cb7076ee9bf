/**
 * The parts of a Fetch or Push request every handler checks first: the instance, the URIs (http, https
 * or urn; `file://` and the rest are refused, never read), the qualifiers and the timestamps.
 */
import { type Timestamp, timestampMs } from '@bufbuild/protobuf/wkt';
import { LarderError } from '../../../shared/errors.ts';
import type { DigestFunction_Value } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { Qualifier } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import { checkDigestFunction, instanceOf } from '../../reapi/digests.ts';
import { parseQualifiers, type Qualifiers } from './qualifiers.ts';

export interface AssetRequest {
  instance: string;
  uris: readonly string[];
  qualifiers: Qualifiers;
}

const MAX_URIS = 32;
const MAX_URI_LENGTH = 8 * 1024;

export function parseAssetRequest(request: {
  instanceName: string;
  uris: readonly string[];
  qualifiers: readonly Qualifier[];
  digestFunction: DigestFunction_Value;
}): AssetRequest {
  checkDigestFunction(request.digestFunction);
  const instance = instanceOf(request.instanceName);
  if (request.uris.length === 0) throw new LarderError('invalid_argument', 'uris is empty: give at least one URI');
  if (request.uris.length > MAX_URIS)
    throw new LarderError('invalid_argument', `${request.uris.length} URIs: at most ${MAX_URIS}`);
  for (const uri of request.uris) checkUri(uri);
  return { instance, uris: request.uris, qualifiers: parseQualifiers(request.qualifiers, request.uris.length) };
}

function checkUri(uri: string): void {
  if (uri.length > MAX_URI_LENGTH)
    throw new LarderError('invalid_argument', `a URI of ${uri.length} characters: at most ${MAX_URI_LENGTH}`);
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 'urn') return;
  if (scheme === 'http' || scheme === 'https') {
    if (URL.canParse(uri)) return;
    throw new LarderError('invalid_argument', `not a valid URL: ${JSON.stringify(uri.slice(0, 200))}`);
  }
  throw new LarderError(
    'invalid_argument',
    `${JSON.stringify(uri.slice(0, 200))}: only http://, https:// and urn: URIs are served${scheme === 'file' ? " (file:// would read the server's own files)" : ''}`,
  );
}

/** A timestamp field in ms since the epoch; null when unset. */
export function instantOf(timestamp: Timestamp | undefined): number | null {
  return timestamp === undefined ? null : timestampMs(timestamp);
}
