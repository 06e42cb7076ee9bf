/** Human sizes and durations in flags and config ("20GiB", "512MiB", "4096"; "90s", "2m"), parsed once at start-up. */
import { LarderError } from './errors.ts';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3, kb: 1e3, kib: 2 ** 10,
  m: 1e6, mb: 1e6, mib: 2 ** 20,
  g: 1e9, gb: 1e9, gib: 2 ** 30,
  t: 1e12, tb: 1e12, tib: 2 ** 40,
};

export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new LarderError('invalid_argument', `invalid size ${JSON.stringify(text)}: use a number with an optional unit such as 512MiB or 20GiB`);
  }
  return Math.floor(Number(match[1]) * unit);
}

export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= factor) return `${(bytes / factor).toFixed(bytes % factor === 0 ? 0 : 1)}${unit}`;
  }
  return `${bytes}B`;
}

/** "90s", "1500ms", "2m", "1h"; a bare number is seconds. `what` names the setting in the error. */
export function parseDuration(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  const ms = match ? Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's']! : NaN;
  if (!Number.isFinite(ms)) throw new LarderError('invalid_argument', `${what} must be a duration such as 90s or 2m, not ${JSON.stringify(text)}`);
  return Math.round(ms);
}
