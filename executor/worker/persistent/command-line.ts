/**
 * Splits an action's command line the way Bazel does for a persistent worker: the arguments that are flag files
 * (`@file`, `--flagfile=file`, `-flagfile=file`) carry the request; everything else starts the worker. Each
 * request's arguments are the flag files' lines, expanded on the server as Bazel expands them locally (one
 * argument per line), so workers written for Bazel's local worker strategy work remotely unchanged.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarderError } from '../../../shared/errors.ts';

export interface WorkerCommandLine {
  /** The worker's start-up command (without `--persistent_worker`, which the pool adds). */
  readonly startup: readonly string[];
  /** The flag-file arguments as they appear, paths relative to the working directory. */
  readonly flagFiles: readonly string[];
}

const FLAG_FILE = /^(?:@|--flagfile=|-flagfile=)(.+)$/;

/** Null when the command has no flag file: such an action cannot be a work request and runs one-shot. */
export function splitCommandLine(argv: readonly string[]): WorkerCommandLine | null {
  const startup: string[] = [];
  const flagFiles: string[] = [];
  for (const arg of argv) {
    // `@@literal` is an escaped @ in Bazel's syntax, not a flag file.
    if (FLAG_FILE.test(arg) && !arg.startsWith('@@')) flagFiles.push(arg);
    else startup.push(arg);
  }
  if (flagFiles.length === 0 || startup.length === 0) return null;
  return { startup, flagFiles };
}

/** Most a request's expanded arguments may weigh: the files are inputs of the action, so the client chose them. */
const MAX_FLAG_FILE_BYTES = 16 * 1024 * 1024;

/** The request's arguments: each flag file's lines, read from the staged working directory. */
export async function expandFlagFiles(flagFiles: readonly string[], cwd: string): Promise<string[]> {
  const args: string[] = [];
  for (const flag of flagFiles) {
    const path = FLAG_FILE.exec(flag)![1]!;
    if (path.startsWith('/') || path.split('/').includes('..'))
      throw new LarderError(
        'invalid_argument',
        `flag file ${JSON.stringify(path)} is not a path inside the working directory`,
      );
    let text: string;
    try {
      const bytes = await readFile(join(cwd, path));
      if (bytes.byteLength > MAX_FLAG_FILE_BYTES)
        throw new LarderError('invalid_argument', `flag file ${path} is over ${MAX_FLAG_FILE_BYTES} bytes`);
      text = bytes.toString('utf8');
    } catch (err) {
      if (err instanceof LarderError) throw err;
      throw new LarderError(
        'invalid_argument',
        `flag file ${path} is not among the action's inputs: ${(err as Error).message}`,
      );
    }
    args.push(...text.split('\n').filter((line, i, lines) => line !== '' || i < lines.length - 1));
  }
  return args;
}
