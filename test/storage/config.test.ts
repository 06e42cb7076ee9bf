// The --store syntax: s3:// with the AWS environment, tiered(...) nesting, and disk:PATH@SIZE.
import { describe, expect, it } from 'vitest';
import { describeStore, parseStoreSpec } from '../../shared/storage/config.ts';
import { invalidArgumentMessage } from '../helpers/errors.ts';

const MiB = 2 ** 20;
const defaults = { maxBytes: 10 * MiB, env: {} };
const fails = (spec: string, env: Record<string, string> = {}) =>
  invalidArgumentMessage(() => parseStoreSpec(spec, { ...defaults, env }));

describe('store syntax', () => {
  it('keeps memory, disk:PATH and --max-size as before, and gives disk its own size with @SIZE', () => {
    expect(parseStoreSpec('memory', defaults)).toEqual({ kind: 'memory', maxBytes: 10 * MiB });
    expect(parseStoreSpec('disk:/var/cache/larder', defaults)).toEqual({
      kind: 'disk',
      path: '/var/cache/larder',
      maxBytes: 10 * MiB,
    });
    expect(parseStoreSpec('disk:/var/cache/larder@20GiB', defaults)).toEqual({
      kind: 'disk',
      path: '/var/cache/larder',
      maxBytes: 20 * 2 ** 30,
    });
    expect(parseStoreSpec('disk:/srv/user@host/cache', defaults)).toMatchObject({
      path: '/srv/user@host/cache',
      maxBytes: 10 * MiB,
    });
  });

  it('reads the S3 endpoint, region and path style from the environment', () => {
    const env = { AWS_ENDPOINT_URL: 'http://127.0.0.1:9000', AWS_REGION: 'eu-west-1', LARDER_S3_FORCE_PATH_STYLE: '1' };
    expect(parseStoreSpec('s3://my-bucket/larder/cache/', { ...defaults, env })).toEqual({
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'larder/cache',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
      timeoutMs: 20_000,
    });
    // The S3-specific endpoint wins over the general one; no endpoint means AWS; no region means us-east-1.
    expect(
      parseStoreSpec('s3://b-1', {
        ...defaults,
        env: { AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2' },
      }),
    ).toMatchObject({ endpoint: 'http://b:2', prefix: '' });
    expect(parseStoreSpec('s3://b-1/p', defaults)).toMatchObject({
      endpoint: null,
      region: 'us-east-1',
      forcePathStyle: false,
    });
  });

  it('lets the spec override the environment', () => {
    const env = { AWS_ENDPOINT_URL_S3: 'http://env:1', AWS_REGION: 'eu-west-1' };
    expect(
      parseStoreSpec('s3://bkt/p?endpoint=http://127.0.0.1:9000&region=auto&path-style=on&timeout=1500ms', {
        ...defaults,
        env,
      }),
    ).toMatchObject({
      endpoint: 'http://127.0.0.1:9000',
      region: 'auto',
      forcePathStyle: true,
      timeoutMs: 1500,
    });
  });

  it('refuses malformed S3 specs', () => {
    expect(fails('s3://')).toMatch(/invalid S3 store/);
    expect(fails('s3://Bad_Bucket/p')).toMatch(/invalid S3 store/);
    expect(fails('s3://bkt/p?colour=red')).toMatch(/unknown S3 store option "colour"/);
    expect(fails('s3://bkt/p?timeout=soon')).toMatch(/timeout/);
    expect(fails('s3://bkt/p', { AWS_ENDPOINT_URL: 'ftp://x' })).toMatch(/http/);
    expect(fails('s3://bkt/p', { LARDER_S3_FORCE_PATH_STYLE: 'maybe' })).toMatch(/path-style/);
  });

  it('parses tiered stores, nested or flat, front first', () => {
    const flat = parseStoreSpec('tiered(memory:256MiB, disk:/var/cache/larder@20GiB, s3://b-1/p)', defaults);
    expect(flat).toMatchObject({
      kind: 'tiered',
      tiers: [
        { kind: 'memory', maxBytes: 256 * MiB },
        { kind: 'disk', maxBytes: 20 * 2 ** 30 },
        { kind: 's3', bucket: 'b-1' },
      ],
    });
    const nested = parseStoreSpec('tiered(memory:512MiB,tiered(disk:/d,s3://b-1/p))', defaults);
    expect(nested).toMatchObject({
      kind: 'tiered',
      tiers: [{ kind: 'memory' }, { kind: 'tiered', tiers: [{ kind: 'disk' }, { kind: 's3' }] }],
    });
    expect(describeStore(flat)).toMatch(/^tiered\(memory .* → disk:\/var\/cache\/larder .* → s3:\/\/b-1\/p/);
  });

  it('refuses tiered stores with fewer than two tiers or unbalanced parentheses', () => {
    expect(fails('tiered(memory)')).toMatch(/at least two/);
    expect(fails('tiered(memory,tiered(disk:/d,s3://b-1/p)')).toMatch(/unbalanced|unknown store/);
    expect(fails('tiered(memory,)')).toMatch(/unknown store/);
    expect(fails('tiered(memory,nfs:/x)')).toMatch(/unknown store "nfs:\/x"/);
  });
});
