/**
 * At most `size` holders at once; the rest wait in order. A waiter whose signal aborts leaves the line at
 * once (p-queue only checks a signal when a job starts, so a queued download would outlive its deadline).
 */
import { LarderError } from '../../../shared/errors.ts';

export class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  /** Resolves to the slot's release function once one is free; rejects (timeout) if `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(new LarderError('timeout', 'no download slot before the deadline'));
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener('abort', leave);
        resolve(this.releaser());
      };
      const leave = () => {
        this.waiting.splice(this.waiting.indexOf(grant), 1);
        reject(new LarderError('timeout', 'no download slot before the deadline'));
      };
      signal.addEventListener('abort', leave, { once: true });
      this.waiting.push(grant);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next === undefined) this.free++;
      else next();
    };
  }
}
