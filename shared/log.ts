/**
 * larder's logger: the small `Logger` interface every module takes, over LogTape (which runs on Node, Deno and
 * edge runtimes alike). Each event goes to stderr as one line: JSON (`@timestamp`, `level`, `message`, `fields`)
 * for machines, or the readable `TIME LEVEL message key=value` text for people. `auto` picks text when stdout is
 * a terminal and JSON otherwise (a service manager, a container, a pipe).
 *
 * LogTape is configured once per process, under the category `larder`, unless the embedding application has
 * configured it already (then larder's records go wherever that configuration sends them). Levels are checked
 * here, per logger, so servers with different `--log-level`s can share a process (tests do).
 *
 * Nothing logs credentials: callers pass subjects and reasons, never tokens or passwords.
 */
import {
  configureSync,
  getConfig,
  getJsonLinesFormatter,
  getLogger,
  type LogRecord,
  type Sink,
} from '@logtape/logtape';
import { type LogFormat, type LogLevel, RANK } from './log-options.ts';

export { isLogFormat, isLogLevel, type LogFormat, type LogLevel } from './log-options.ts';
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  /** Whether `debug` writes anything: a hot path skips building fields nobody reads (absent: assume it does). */
  readonly debugging?: boolean;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const LOGTAPE_LEVEL = { debug: 'debug', info: 'info', warn: 'warning', error: 'error' } as const;

export function createLogger(level: LogLevel, format: LogFormat = 'auto'): Logger {
  configureOnce();
  const chosen = format === 'auto' ? (stdoutIsTerminal() ? 'text' : 'json') : format;
  // The category's last part picks the sink, and so the line format.
  const logger = getLogger(['larder', chosen]);
  const emit = (at: Exclude<LogLevel, 'silent'>) => (message: string, fields?: LogFields) => {
    if (RANK[at] < RANK[level]) return;
    // LogTape reads `{name}` in a message as a placeholder; larder's messages are plain text.
    logger[LOGTAPE_LEVEL[at]](message.replaceAll('{', '{{').replaceAll('}', '}}'), definedFields(fields));
  };
  return {
    debugging: RANK.debug >= RANK[level],
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
  };
}

function definedFields(fields: LogFields | undefined): Record<string, unknown> {
  const defined: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields ?? {})) if (value !== undefined) defined[key] = value;
  return defined;
}

function configureOnce(): void {
  if (getConfig() !== null) return;
  configureSync({
    sinks: { json: stderrSink(jsonLine), text: stderrSink(textLine) },
    loggers: [
      { category: ['larder', 'json'], sinks: ['json'], lowestLevel: 'debug' },
      { category: ['larder', 'text'], sinks: ['text'], lowestLevel: 'debug' },
      // LogTape's own notices (a misconfigured sink) as text, without its start-up note.
      { category: ['logtape', 'meta'], sinks: ['text'], lowestLevel: 'warning' },
    ],
  });
}

/** console.error writes stderr on Node, Deno and edge runtimes alike, and stdout stays for the listening line. */
function stderrSink(format: (record: LogRecord) => string): Sink {
  return (record) => console.error(format(record));
}

const jsonLine = (() => {
  const format = getJsonLinesFormatter({ properties: 'nest:fields', categorySeparator: () => 'larder' });
  return (record: LogRecord) => format(record).trimEnd();
})();

const TEXT_LEVEL: Record<string, string> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warning: 'WARN',
  error: 'ERROR',
  fatal: 'FATAL',
};

/** `2026-01-01T00:00:00.000Z INFO message key=value key="a value with spaces"`: larder's readable format. */
function textLine(record: LogRecord): string {
  const message = record.message.map((part) => (typeof part === 'string' ? part : String(part))).join('');
  const fields = Object.entries(record.properties)
    .map(([k, v]) => ` ${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
    .join('');
  return `${new Date(record.timestamp).toISOString()} ${TEXT_LEVEL[record.level] ?? record.level} ${message}${fields}`;
}

/** Whether a person is watching: Node and Deno both offer `process.stdout.isTTY`; edge runtimes have no terminal. */
function stdoutIsTerminal(): boolean {
  const process = (globalThis as { process?: { stdout?: { isTTY?: boolean } } }).process;
  return process?.stdout?.isTTY === true;
}
