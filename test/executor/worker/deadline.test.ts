/** The action deadline (deadline.ts): staging's signal, aborted by a cancellation or by the timeout, until stopped. */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ActionTimeoutError, startDeadline } from '../../../executor/worker/deadline.ts';

describe('startDeadline', () => {
  it("aborts with the cancellation's reason", () => {
    const cancel = new AbortController();
    const deadline = startDeadline(60_000, cancel.signal);
    const reason = new Error('cancelled by the client');
    cancel.abort(reason);
    expect(deadline.signal.reason).toBe(reason);
    deadline.stop();
  });

  it('is aborted from the start when the cancellation came first', () => {
    const cancel = new AbortController();
    cancel.abort(new Error('gone'));
    const deadline = startDeadline(60_000, cancel.signal);
    expect(deadline.signal.aborted).toBe(true);
    deadline.stop();
  });

  it('aborts with an ActionTimeoutError once the timeout passes', async () => {
    const deadline = startDeadline(1, new AbortController().signal);
    await new Promise<void>((resolve) => deadline.signal.addEventListener('abort', () => resolve(), { once: true }));
    expect(deadline.signal.reason).toBeInstanceOf(ActionTimeoutError);
    deadline.stop();
  });

  it('once stopped, follows the cancellation no more and leaves no listener on it', () => {
    const cancel = new AbortController();
    const deadline = startDeadline(60_000, cancel.signal);
    deadline.stop();
    expect(getEventListeners(cancel.signal, 'abort')).toHaveLength(0);
    cancel.abort(new Error('after staging'));
    expect(deadline.signal.aborted).toBe(false);
  });

  it('gives the run what is left of the timeout, and throws when nothing is', () => {
    let now = 1_000;
    const deadline = startDeadline(500, new AbortController().signal, () => now);
    now += 200;
    expect(deadline.remainingMs()).toBe(300);
    now += 300;
    expect(() => deadline.remainingMs()).toThrow(ActionTimeoutError);
    deadline.stop();
  });
});
