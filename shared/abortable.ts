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
