/**
 * The values of --log-level and --log-format, apart from the logger itself: the config parser needs them, and
 * commands that log nothing (`larder credential-helper get`) should not load LogTape to parse their options.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'auto' | 'json' | 'text';

export const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

export function isLogLevel(value: string): value is LogLevel {
  return value in RANK;
}

export function isLogFormat(value: string): value is LogFormat {
  return value === 'auto' || value === 'json' || value === 'text';
}
