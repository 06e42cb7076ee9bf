import { describe, expect, it } from 'vitest';
import { parseBlobPath } from '../../edge/blob-path.ts';
import { larderCode } from '../helpers/errors.ts';

const hash = 'a'.repeat(64);

describe('parseBlobPath', () => {
  it('reads kind, hash and an optional instance prefix of any depth', () => {
    expect(parseBlobPath(`/cas/${hash}`)).toEqual({ instance: '', kind: 'cas', hash });
    expect(parseBlobPath(`/ac/${hash}`)).toEqual({ instance: '', kind: 'ac', hash });
    expect(parseBlobPath(`/team-a/cas/${hash}`)).toEqual({ instance: 'team-a', kind: 'cas', hash });
    expect(parseBlobPath(`/org/team_b.v2/ac/${hash}`)).toEqual({ instance: 'org/team_b.v2', kind: 'ac', hash });
    expect(parseBlobPath(`//cas/${hash}`)).toEqual({ instance: '', kind: 'cas', hash });
    expect(parseBlobPath(`/team-a//cas/${hash}`)).toEqual({ instance: 'team-a', kind: 'cas', hash });
  });

  it('is null for paths that are not cache paths', () => {
    for (const path of ['/', '/healthz', `/blobs/${hash}`, `/cas/${hash}/extra`, '/cas/'])
      expect(parseBlobPath(path)).toBeNull();
  });

  it('refuses hostile instance prefixes and bad hashes', () => {
    for (const path of [
      `/../cas/${hash}`,
      `/a/../cas/${hash}`,
      `/a/%2e%2e/cas/${hash}`,
      `/a%2F..%2Fb/cas/${hash}`,
      `/.git/cas/${hash}`,
      `/a//b/cas/${hash}`,
      `/cas/${hash.toUpperCase()}`,
      `/cas/${hash.slice(2)}`,
      '/a/%zz/cas/x',
    ]) {
      let error: unknown;
      try {
        parseBlobPath(path);
      } catch (err) {
        error = err;
      }
      expect(larderCode(error), path).toBe('invalid_argument');
    }
  });
});
