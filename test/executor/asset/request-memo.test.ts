/**
 * RequestMemo on its own: what is worked out from a request is kept by the request's content, never mixes up two
 * contents, keeps nothing that threw, and stays bounded. FetchBlob's use of it is in fetch.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { type RequestContent, RequestMemo } from '../../../executor/services/asset/request-memo.ts';

const request = (uris: string[], qualifiers: Array<[string, string]> = [], instanceName = ''): RequestContent => ({
  instanceName,
  digestFunction: 0,
  uris,
  qualifiers: qualifiers.map(([name, value]) => ({ $typeName: 'build.bazel.remote.asset.v1.Qualifier', name, value })),
});

/** A memo whose work records every request it was asked to work out. */
function counting() {
  const worked: RequestContent[] = [];
  const memo = new RequestMemo((r) => {
    worked.push(r);
    return { uris: [...r.uris] };
  });
  return { memo, worked };
}

describe('RequestMemo', () => {
  it('works a content out once, and hands the same result to every request with that content', () => {
    const { memo, worked } = counting();
    const first = memo.get(request(['http://a/x'], [['checksum.sri', 'sha256-x']]));
    expect(memo.get(request(['http://a/x'], [['checksum.sri', 'sha256-x']]))).toBe(first);
    expect(worked).toHaveLength(1);
  });

  it('tells apart contents that only differ in where one part ends and the next begins', () => {
    const { memo, worked } = counting();
    const contents = [
      request(['ab', 'c']),
      request(['a', 'bc']),
      request(['abc']),
      request(['a'], [['b', 'c']]),
      request(['a'], [['bc', '']]),
      request(['a'], [['', 'bc']]),
      request(['a', 'b'], [['c', '']]),
      request(['bc'], [], 'a'),
      request(['a'], [], 'bc'),
      { ...request(['a']), digestFunction: 1 },
    ];
    for (const content of contents) memo.get(content);
    for (const content of contents) memo.get(content);
    expect(worked).toEqual(contents);
  });

  it('keeps nothing that threw: a refused request is refused again', () => {
    let calls = 0;
    const memo = new RequestMemo(() => {
      calls++;
      throw new Error('refused');
    });
    expect(() => memo.get(request(['x']))).toThrow('refused');
    expect(() => memo.get(request(['x']))).toThrow('refused');
    expect(calls).toBe(2);
  });

  it('works out a request too big to keep every time', () => {
    const { memo, worked } = counting();
    const big = request(['http://a/x'], [['http_header:Cookie', 'c'.repeat(4096)]]);
    memo.get(big);
    memo.get(big);
    expect(worked).toHaveLength(2);
  });

  it('knows a frozen request by the object itself, even one too big to key by its content', () => {
    const { memo, worked } = counting();
    const big = Object.freeze(request(['http://a/x'], [['http_header:Cookie', 'c'.repeat(4096)]]));
    const first = memo.get(big);
    expect(memo.get(big)).toBe(first);
    expect(worked).toHaveLength(1);
  });

  it('keeps at most 4096 requests, letting go of the one kept first', () => {
    const { memo, worked } = counting();
    for (let i = 0; i <= 4096; i++) memo.get(request([`http://a/${i}`]));
    memo.get(request(['http://a/4096']));
    expect(worked).toHaveLength(4097);
    memo.get(request(['http://a/0']));
    expect(worked).toHaveLength(4098);
  });
});
