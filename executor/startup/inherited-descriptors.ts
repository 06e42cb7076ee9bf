/**
 * Descriptors the executor (or a fleet's worker) was handed open by whoever started it. A parent may leave some open without
 * close-on-exec (a service manager's, a shell's or a test runner's pipe). Node marks its first descriptors
 * close-on-exec when it starts, but only up to the first gap past 15, so one with a higher number stays inheritable
 * and would reach every command larder starts: actions (bubblewrap passes descriptors on too), persistent workers
 * and the spawner. An action could then write into its parent's pipe, or read what it was not given.
 */
import { closeSync, readdirSync, readFileSync } from 'node:fs';

/** open(2)'s O_CLOEXEC on Linux, as /proc/self/fdinfo shows it (octal `flags:`); node:fs has no constant for it. */
const O_CLOEXEC = 0o2000000;

/**
 * Closes every descriptor beyond stdin, stdout and stderr that a command started now would inherit. Node's own
 * descriptors are all close-on-exec, which is how the two are told apart. Call it first thing at start, before
 * anything of larder's opens a descriptor.
 */
export function closeInheritedDescriptors(): void {
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the listing's own descriptor, closed by now
    }
    const flags = /^flags:\s+([0-7]+)$/m.exec(info);
    if (flags === null || (Number.parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0) continue;
    closeSync(fd);
  }
}
