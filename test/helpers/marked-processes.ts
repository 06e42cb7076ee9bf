/**
 * Finding the processes a test started by a mark only they carry (an argument on their command line), as seen
 * from the host. Sandboxed actions live in PID namespaces of their own, so a pid they report is not one the host
 * knows; and other tests' actions run as the same users, so a test may only ever look at (or kill) what it
 * marked itself.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

/** A mark unique to this call, safe inside a shell word. */
export function newMark(label: string): string {
  return `larder-test-${label}-${randomUUID().slice(0, 8)}`;
}

/** Host pids of live (not zombie) processes whose command line contains `mark`. */
export function markedProcesses(mark: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = readOr(`/proc/${name}/cmdline`).replace(/\0/g, ' ');
    if (cmdline.includes(mark) && !isZombie(Number(name))) found.push(Number(name));
  }
  return found;
}

/** The chain of parents of `pid` (itself first), with their command lines, at most `limit` long. */
export function ancestry(pid: number, limit = 16): Array<{ pid: number; cmdline: string }> {
  const chain: Array<{ pid: number; cmdline: string }> = [];
  for (let at = pid; at > 1 && chain.length < limit; ) {
    const stat = readOr(`/proc/${at}/stat`);
    if (stat === '') break;
    chain.push({ pid: at, cmdline: readOr(`/proc/${at}/cmdline`).replace(/\0/g, ' ').trim() });
    at = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return chain;
}

/** Kills (SIGKILL) the processes carrying `mark`: the cleanup of a test that failed before its action ended. */
export function killMarked(mark: string): void {
  for (const pid of markedProcesses(mark)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function isZombie(pid: number): boolean {
  const stat = readOr(`/proc/${pid}/stat`);
  return stat === '' || stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
