/**
 * What execve(2) takes on Linux: no single argument or `NAME=value` longer than MAX_ARG_STRLEN (32 pages), and
 * all of them together (with their pointers) within ARG_MAX, a quarter of the default 8 MiB stack. Past either,
 * the kernel answers E2BIG. Checked before anything is spawned, so a client's oversized command is that
 * client's INVALID_ARGUMENT, never a failure of the process that would have started it.
 */
import { LarderError } from '../../shared/errors.ts';

const MAX_ARG_STRLEN = 32 * 4096;
/** ARG_MAX less room for what larder adds in front (the sandbox's own arguments). */
const MAX_TOTAL = 2 * 1024 * 1024 - 64 * 1024;

export function checkCommandSize(argv: readonly string[], env: Readonly<Record<string, string>>): void {
  let total = 0;
  const count = (text: string, what: () => string) => {
    const bytes = Buffer.byteLength(text) + 1;
    if (bytes > MAX_ARG_STRLEN)
      throw new LarderError(
        'invalid_argument',
        `${what()} is ${bytes} bytes; the kernel takes at most ${MAX_ARG_STRLEN} per argument or variable (E2BIG)`,
      );
    total += bytes + 8;
  };
  argv.forEach((arg, i) => {
    count(arg, () => `argument ${i}`);
  });
  for (const [name, value] of Object.entries(env)) count(`${name}=${value}`, () => `environment variable ${name}`);
  if (total > MAX_TOTAL)
    throw new LarderError(
      'invalid_argument',
      `the command line and environment take ${total} bytes; the kernel takes at most ${MAX_TOTAL} here (E2BIG)`,
    );
}
