/** Durations in flags and store options ("20s", "1500ms", "15m", "2h"; a bare number is seconds), parsed once. */
import { LarderError } from './errors.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or a LarderError naming `what` when the text is not a duration. */
export function parseDuration(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = match ? Number(match[1]) * UNIT_MS[match[2] ?? 's']! : NaN;
  if (!Number.isFinite(ms))
    throw new LarderError(
      'invalid_argument',
      `${what} must be a duration such as 90s, 15m or 2h, not ${JSON.stringify(text)}`,
    );
  return Math.round(ms);
}
