/** What a parser refuses with: its invalid_argument message, or a string saying it did something else. */
import { isLarderError } from '../../shared/errors.ts';

export function invalidArgumentMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return isLarderError(err, 'invalid_argument') ? err.message : `unexpected: ${String(err)}`;
  }
  return 'did not throw';
}

/** An error's LarderError code, else what the error was: `expect(larderCode(err)).toBe('timeout')` shows what came. */
export function larderCode(err: unknown): string {
  return isLarderError(err) ? err.code : `not a LarderError: ${String(err)}`;
}
