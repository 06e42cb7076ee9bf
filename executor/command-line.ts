/**
 * Keeps passwords off larder's command line. Every process on the host can read any other's command line
 * (/proc/PID/cmdline, `ps`), actions included, so a password in `--queue redis://:PASSWORD@…` is everyone's: an
 * action that reads it can log in to the fleet's Redis. Passwords belong in files (--queue-password-file) or the
 * environment (LARDER_QUEUE, which only the same user and root can read, in /proc/PID/environ). When one is on the
 * command line anyway, the CLI replaces what /proc shows as its first step (hideCommandLine), and the server says
 * so loudly once its log is up (warnAboutPasswords): what was readable from the start until then cannot be undone.
 * No dependencies, so the CLI can load it before anything else.
 */
import type { Logger } from '../shared/log.ts';

/** `scheme://user:password@` at the start of a URL, anywhere in an argument (`--queue=redis://…` too). */
const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^/?#\s]*)@/gi;

/** The argument with every URL's password replaced by `***` (the user name stays: it is not a secret). */
export function redactArgument(arg: string): string {
  return arg.replace(USERINFO, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon === -1 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}

/**
 * Sets the process title (what /proc/PID/cmdline and `ps` show) to `larder ROLE` and the arguments, redacted.
 * Node writes the title over the original argument memory, which is what /proc reads; a title longer than that
 * memory is cut short, so it can never let a password through.
 */
export function hideCommandLine(role: string, args: readonly string[]): void {
  process.title = [`larder ${role}`, ...args.map(redactArgument)].join(' ');
}

/** Warns about each argument that held a URL with a password, naming its flag (never the password). */
export function warnAboutPasswords(args: readonly string[], log: Logger): void {
  args.forEach((arg, index) => {
    if (redactArgument(arg) === arg) return;
    const previous = args[index - 1];
    const flag = arg.startsWith('--') ? arg.split('=')[0]! : previous?.startsWith('--') ? previous : 'an argument';
    log.warn(
      `A PASSWORD IS ON THE COMMAND LINE (${flag}): every process on this host, actions included, could read it ` +
        'from /proc until larder hid it at start. Put it in --queue-password-file (or the URL in LARDER_QUEUE, ' +
        'which only this user can read) and change it.',
    );
  });
}
