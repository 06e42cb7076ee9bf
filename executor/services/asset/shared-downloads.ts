/**
 * Downloads in flight, by what they fetch. A FetchBlob that asks for what another call is downloading at that
 * moment waits for that download instead of sending the origin a second request: a CI fleet that starts the
 * same build everywhere at once asks for the same archives at once, and the origin should see each once.
 *
 * A caller that gives up (cancel, its own deadline) stops waiting at once; the download itself stops only when
 * nobody waits for it any more, so one impatient caller cannot fail the others.
 */
import { abortable } from '../../../shared/abortable.ts';

interface Flight<T> {
  readonly result: Promise<T>;
  readonly controller: AbortController;
  waiters: number;
}

export class SharedDownloads<T> {
  readonly #inFlight = new Map<string, Flight<T>>();

  /** How many downloads are in flight (each once, however many callers wait for it). */
  get size(): number {
    return this.#inFlight.size;
  }

  /** How many callers wait for those downloads. */
  get waiters(): number {
    let sum = 0;
    for (const flight of this.#inFlight.values()) sum += flight.waiters;
    return sum;
  }

  /** The download in flight under `key`, waited for as `caller`; null when there is none. */
  join(key: string, caller: AbortSignal): Promise<T> | null {
    const flight = this.#inFlight.get(key);
    return flight === undefined ? null : waitFor(flight, caller);
  }

  /**
   * Starts `download` under `key` and waits for it as `caller`. `download` gets a signal that aborts when the
   * last caller waiting for it has left. The key must not be in flight (ask join() first, synchronously before).
   */
  start(key: string, caller: AbortSignal, download: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#inFlight.has(key)) throw new Error(`a download of ${key} is in flight already`);
    const controller = new AbortController();
    const flight: Flight<T> = {
      controller,
      waiters: 0,
      result: download(controller.signal).finally(() => this.#inFlight.delete(key)),
    };
    this.#inFlight.set(key, flight);
    return waitFor(flight, caller);
  }
}

/** Waits for the flight as one more caller; the last caller to leave stops the download. */
function waitFor<T>(flight: Flight<T>, caller: AbortSignal): Promise<T> {
  flight.waiters++;
  const leave = () => {
    flight.waiters--;
    if (flight.waiters === 0) flight.controller.abort(caller.reason);
  };
  if (caller.aborted) leave();
  else {
    caller.addEventListener('abort', leave, { once: true });
    flight.result.then(
      () => caller.removeEventListener('abort', leave),
      () => caller.removeEventListener('abort', leave),
    );
  }
  return abortable(flight.result, caller);
}
