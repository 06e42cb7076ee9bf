/**
 * An action's timeout covers staging its inputs as well as running its command: a client cannot buy unbounded
 * worker time with an input root that is slow to stage. The deadline starts when staging does; staging is
 * stopped through `signal` when it runs past, and the run gets what is left.
 */
import { followSignals } from '../../shared/abortable.ts';
import { LarderError } from '../../shared/errors.ts';

/** The action's timeout passed before its command could start (DEADLINE_EXCEEDED to the client). */
export class ActionTimeoutError extends LarderError {
  constructor(timeoutMs: number) {
    super('timeout', `staging the action's inputs took longer than its timeout of ${timeoutMs / 1000} s`);
  }
}

export interface ActionDeadline {
  /**
   * Aborts when `cancelled` does (with its reason) or the timeout passes (with an ActionTimeoutError), until
   * `stop`: it is staging's signal.
   */
  readonly signal: AbortSignal;
  /** Stops the timer and the following of `cancelled` (idempotent): staging is over, and the runner times the rest. */
  stop(): void;
  /** What is left of the timeout for the run, in ms; throws ActionTimeoutError when nothing is. */
  remainingMs(): number;
}

export function startDeadline(timeoutMs: number, cancelled: AbortSignal, now: () => number = Date.now): ActionDeadline {
  const startedAt = now();
  const deadline = followSignals([cancelled]);
  const timer = setTimeout(() => deadline.abort(new ActionTimeoutError(timeoutMs)), timeoutMs);
  return {
    signal: deadline.signal,
    stop() {
      clearTimeout(timer);
      deadline.release();
    },
    remainingMs() {
      clearTimeout(timer);
      const left = timeoutMs - (now() - startedAt);
      if (left <= 0) throw new ActionTimeoutError(timeoutMs);
      return left;
    },
  };
}
