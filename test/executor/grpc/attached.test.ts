// Values attached to per-call messages (attached.ts), and the lazy lists built on them (digest-columns.ts): they
// behave as a WeakMap would and stay out of every field a message shows.
import { describe, expect, it } from 'vitest';
import { Attached } from '../../../executor/grpc/attached.ts';
import { lazyList } from '../../../executor/grpc/digest-columns.ts';

describe('Attached', () => {
  it('keeps a value with an object, for that object only, out of its keys, spread and JSON', () => {
    const columns = new Attached<{ n: number }>('test');
    const other = new Attached<{ n: number }>('test');
    const message: Record<string, unknown> = { name: 'x' };
    expect(columns.get(message)).toBeUndefined();
    columns.set(message, { n: 1 });
    expect(columns.get(message)).toEqual({ n: 1 });
    expect(other.get(message)).toBeUndefined(); // same description, another key
    expect(columns.get({ name: 'x' })).toBeUndefined();
    expect(Object.keys(message)).toEqual(['name']);
    expect({ ...message }).toEqual({ name: 'x' });
    expect(JSON.stringify(message)).toBe('{"name":"x"}');
    columns.set(message, { n: 2 });
    expect(columns.get(message)).toEqual({ n: 2 });
    columns.delete(message);
    expect(columns.get(message)).toBeUndefined();
    columns.delete({}); // nothing attached: nothing to do
  });
});

describe('lazyList', () => {
  it('makes the list once when first read, takes a list written to it, and refuses writes once frozen', () => {
    let made = 0;
    let replaced = 0;
    const message: { digests?: object[] } = {};
    lazyList(
      message,
      'digests',
      () => [{ made: ++made }],
      () => replaced++,
    );
    expect(made).toBe(0);
    expect(message.digests).toEqual([{ made: 1 }]);
    expect(message.digests).toBe(message.digests);
    expect(made).toBe(1);
    expect(Object.keys(message)).toEqual(['digests']);
    message.digests = [{ written: true }];
    expect(replaced).toBe(1);
    expect(message.digests).toEqual([{ written: true }]);
    Object.freeze(message);
    expect(() => {
      message.digests = [];
    }).toThrow(TypeError);
  });

  it('gives every message the same getter and setter, so the engine gives them one shape', () => {
    // Functions made per message went into a hidden class per message, which kept each call's columns alive
    // through young collections (digest-columns.ts).
    const [a, b] = [{}, {}];
    for (const [i, message] of [a, b].entries())
      lazyList(
        message,
        'digests',
        () => [{ i }],
        () => {},
      );
    const da = Object.getOwnPropertyDescriptor(a, 'digests')!;
    const db = Object.getOwnPropertyDescriptor(b, 'digests')!;
    expect(da.get).toBe(db.get);
    expect(da.set).toBe(db.set);
    expect((a as { digests: unknown }).digests).toEqual([{ i: 0 }]);
    expect((b as { digests: unknown }).digests).toEqual([{ i: 1 }]);
  });
});
