/** followSignals (shared/abortable.ts): a signal of one's own that follows others until released. */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { followSignals } from '../../shared/abortable.ts';

describe('followSignals', () => {
  it('aborts with the reason of whichever source aborts first', () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const following = followSignals([a.signal, b.signal]);
    const reason = new Error('b went first');
    b.abort(reason);
    a.abort(new Error('too late'));
    expect(following.signal.reason).toBe(reason);
  });

  it('is aborted from the start when a source already was', () => {
    const gone = new AbortController();
    gone.abort(new Error('gone'));
    const following = followSignals([new AbortController().signal, gone.signal]);
    expect(following.signal.aborted).toBe(true);
    expect(following.signal.reason).toBe(gone.signal.reason);
  });

  it("aborts for the caller's own reason", () => {
    const source = new AbortController();
    const following = followSignals([source.signal]);
    following.abort('timed out');
    expect(following.signal.reason).toBe('timed out');
    expect(source.signal.aborted).toBe(false);
  });

  it('once released, leaves no listener on its sources and follows them no more', () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const following = followSignals([a.signal, b.signal]);
    following.release();
    expect(getEventListeners(a.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(b.signal, 'abort')).toHaveLength(0);
    a.abort(new Error('after release'));
    expect(following.signal.aborted).toBe(false);
  });
});
