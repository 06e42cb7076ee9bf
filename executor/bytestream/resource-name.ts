/**
 * ByteStream resource names, as REAPI defines them:
 *
 *   read:   {instance}/blobs/{hash}/{size}
 *           {instance}/compressed-blobs/zstd/{hash}/{size}
 *   write:  {instance}/uploads/{uuid}/blobs/{hash}/{size}{/optional metadata}
 *           {instance}/uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}{/optional metadata}
 *
 * The instance may span several segments and is empty for the default instance (the name then starts at
 * `blobs/` or `uploads/`). REAPI forbids the keywords `blobs`, `uploads`, `compressed-blobs`, … as instance
 * segments, so the first keyword segment ends the instance. Digest-function segments (`blake3/…`) name
 * hashes this server cannot check and are refused.
 */
import { type Digest, parseDigest, parseInstance } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';

export type Encoding = 'identity' | 'zstd';

export interface BlobResource {
  instance: string;
  digest: Digest;
  encoding: Encoding;
}

export interface UploadResource extends BlobResource {
  uuid: string;
}

const KEYWORDS = new Set([
  'blobs',
  'uploads',
  'compressed-blobs',
  'actions',
  'actionResults',
  'operations',
  'capabilities',
]);
const COMPRESSORS = new Set(['zstd', 'deflate', 'brotli']);

export function parseReadName(name: string): BlobResource {
  const segments = name.split('/');
  const at = segments.findIndex((s) => KEYWORDS.has(s));
  if (at < 0 || (segments[at] !== 'blobs' && segments[at] !== 'compressed-blobs')) {
    throw invalid(name, '{instance}/blobs/{hash}/{size} or {instance}/compressed-blobs/zstd/{hash}/{size}');
  }
  const rest = blobPart(name, segments.slice(at));
  if (rest.trailing.length > 0) throw invalid(name, 'nothing after {size} in a read');
  return { instance: instanceOf(name, segments.slice(0, at)), digest: rest.digest, encoding: rest.encoding };
}

export function parseWriteName(name: string): UploadResource {
  const segments = name.split('/');
  const at = segments.findIndex((s) => KEYWORDS.has(s));
  const uuid = segments[at + 1];
  if (at < 0 || segments[at] !== 'uploads' || uuid === undefined || uuid === '' || KEYWORDS.has(uuid)) {
    throw invalid(name, '{instance}/uploads/{uuid}/blobs/{hash}/{size}');
  }
  // Anything after {size} is optional metadata that servers may ignore.
  const rest = blobPart(name, segments.slice(at + 2));
  return { instance: instanceOf(name, segments.slice(0, at)), uuid, digest: rest.digest, encoding: rest.encoding };
}

function blobPart(name: string, segments: string[]): { digest: Digest; encoding: Encoding; trailing: string[] } {
  let encoding: Encoding = 'identity';
  let next = 1;
  if (segments[0] === 'compressed-blobs') {
    const compressor = segments[1] ?? '';
    if (compressor !== 'zstd') {
      const why = COMPRESSORS.has(compressor)
        ? `compressor ${compressor} is not supported (zstd is)`
        : 'expected compressed-blobs/zstd/…';
      throw new LarderError('invalid_argument', `${why}: ${shown(name)}`);
    }
    encoding = 'zstd';
    next = 2;
  } else if (segments[0] !== 'blobs') {
    throw invalid(name, 'blobs/{hash}/{size} after the upload id');
  }
  const [hash, size, ...trailing] = segments.slice(next);
  if (
    hash !== undefined &&
    /^[a-z0-9]+$/.test(hash) &&
    !/^[0-9a-f]{64}$/.test(hash) &&
    size !== undefined &&
    !/^\d+$/.test(size)
  ) {
    throw new LarderError(
      'invalid_argument',
      `unsupported digest function ${JSON.stringify(hash)}: this server speaks SHA256 only`,
    );
  }
  if (hash === undefined || size === undefined || !/^\d+$/.test(size)) throw invalid(name, '…/{hash}/{size}');
  return { digest: parseDigest(hash, size), encoding, trailing };
}

function instanceOf(name: string, segments: string[]): string {
  try {
    return parseInstance(segments.join('/'));
  } catch (err) {
    throw (err as LarderError).wrap(`resource ${shown(name)}`);
  }
}

function invalid(name: string, expected: string): LarderError {
  return new LarderError('invalid_argument', `invalid resource name ${shown(name)}: expected ${expected}`);
}

function shown(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}
