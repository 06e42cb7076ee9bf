/**
 * The option tables every command is configured by, and checked by once at start-up. Each option is one OptionRow:
 * its flag, its LARDER_* variable, its default and its help text. resolveOptions reads a table from the command line
 * and the environment (a flag beats its variable, which beats the default); optionsHelp writes `--help` from the same
 * rows, and test/readme.test.ts checks the README's configuration reference against them. The parsers below check
 * values that options of every role have in common.
 */
import { parseArgs } from 'node:util';
import { LarderError } from './errors.ts';
import { isLogFormat, isLogLevel, type LogFormat, type LogLevel } from './log-options.ts';

export interface OptionRow {
  flag: string;
  env: string;
  help: string;
  default: (env: Env) => string;
  /** A switch: `--flag` alone means on; its variable takes on/off. */
  boolean?: true;
}

export type Env = Record<string, string | undefined>;

export function resolveOptions(rows: readonly OptionRow[], args: string[], env: Env): Record<string, string> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: Object.fromEntries(
        rows.map((row) => [row.flag, { type: row.boolean ? ('boolean' as const) : ('string' as const) }]),
      ),
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new LarderError('invalid_argument', (err as Error).message);
  }
  const values: Record<string, string> = {};
  for (const row of rows) {
    const given = parsed.values[row.flag];
    if (given === true) values[row.flag] = 'on';
    else values[row.flag] = typeof given === 'string' ? given : env[row.env] || row.default(env);
  }
  return values;
}

export function optionsHelp(rows: readonly OptionRow[], env: Env): string {
  return rows
    .map(
      (row) => `  --${row.flag.padEnd(16)} ${row.help}\n  ${''.padEnd(18)} env ${row.env}, default ${row.default(env)}`,
    )
    .join('\n');
}

export function parseSwitch(flag: string, value: string): boolean {
  if (['on', 'true', '1', 'yes'].includes(value)) return true;
  if (['off', 'false', '0', 'no'].includes(value)) return false;
  throw new LarderError('invalid_argument', `--${flag} must be on or off, not ${JSON.stringify(value)}`);
}

/** A count with no upper bound of its own (parseCount stops at 1024): at least 1. */
export function parseLimit(flag: string, text: string): number {
  const value = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || value < 1 || !Number.isSafeInteger(value))
    throw new LarderError(
      'invalid_argument',
      `--${flag} must be a whole number of at least 1, not ${JSON.stringify(text)}`,
    );
  return value;
}

/** A small count: a whole number from `min` to 1024. */
export function parseCount(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > 1024)
    throw new LarderError(
      'invalid_argument',
      `--${flag} must be a whole number from ${min} to 1024, not ${JSON.stringify(text)}`,
    );
  return value;
}

export function parseLogLevel(text: string): LogLevel {
  if (!isLogLevel(text))
    throw new LarderError('invalid_argument', `--log-level must be debug, info, warn, error or silent, not ${text}`);
  return text;
}

export function parseLogFormat(text: string): LogFormat {
  if (!isLogFormat(text))
    throw new LarderError('invalid_argument', `--log-format must be auto, json or text, not ${JSON.stringify(text)}`);
  return text;
}
