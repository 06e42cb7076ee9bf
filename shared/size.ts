/** Human sizes in flags and config ("20GiB", "512MiB", "4096"), parsed once at start-up. */
import { LarderError } from './errors.ts';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  tib: 2 ** 40,
};

export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new LarderError(
      'invalid_argument',
      `invalid size ${JSON.stringify(text)}: use a number with an optional unit such as 512MiB or 20GiB`,
    );
  }
  return Math.floor(Number(match[1]) * unit);
}

export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= factor) return `${(bytes / factor).toFixed(bytes % factor === 0 ? 0 : 1)}${unit}`;
  }
  return `${bytes}B`;
}
