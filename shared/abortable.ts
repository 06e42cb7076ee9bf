/**
 * Waits for `promise` unless `signal` aborts first, then rejects with the signal's reason at once. The work
 * behind the promise is not stopped (pass the signal to it too where it can listen); use this where the caller
 * must stop waiting promptly and what goes on writes nowhere the caller still owns.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => {}); // nobody waits for it any more; its failure is no one's business
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** A signal of the caller's own that follows others (followSignals). */
export interface FollowingSignal {
  readonly signal: AbortSignal;
  /** Aborts it for a reason of the caller's own (a timer of its own, say). */
  abort(reason: unknown): void;
  /** Stops following the sources: nothing is left listening on them. */
  release(): void;
}

/**
 * A signal that aborts, with the reason, when any of `sources` does (at once if one has), or when the caller aborts
 * it, until `release`. AbortSignal.any does the same at a few times the cost on Node 20 (tens of µs per call on the
 * event loop), and leaves a weak reference on every source until a collection: too much for long-lived sources
 * (a worker's, a lease's) followed afresh for each action.
 */
export function followSignals(sources: readonly AbortSignal[]): FollowingSignal {
  const following = new AbortController();
  const onAbort = (event: Event) => following.abort((event.target as AbortSignal).reason);
  for (const source of sources) {
    if (source.aborted) following.abort(source.reason);
    else source.addEventListener('abort', onAbort, { once: true });
  }
  return {
    signal: following.signal,
    abort: (reason) => following.abort(reason),
    release() {
      for (const source of sources) source.removeEventListener('abort', onAbort);
    },
  };
}
