/**
 * Which process owns a folder of work in progress (upload temp files, partial uploads), when several larder
 * processes share one disk folder: each names its folders with its tag, and a process starting up removes the
 * folders of owners that are gone (crashed or killed) at once, and never those of owners still running.
 *
 * A tag is the PID plus, on Linux, the process's start time from /proc, so a PID reused by an unrelated process
 * does not keep a dead owner's folder alive. Same-host only: processes on other machines sharing a network file
 * system cannot be told apart (do not share a disk folder across hosts).
 */
import { readFileSync } from 'node:fs';
import process from 'node:process';

const TAG = /^p(\d+)-(\d+|x)$/;

/** This process's tag, such as `p4242-918273`. */
export function ownerTag(): string {
  return `p${process.pid}-${startTime(process.pid) ?? 'x'}`;
}

/** True when the tag names a process that is still running; false for a malformed tag. */
export function ownerAlive(tag: string): boolean {
  const match = TAG.exec(tag);
  if (match === null) return false;
  const pid = Number(match[1]);
  if (match[2] !== 'x') return startTime(pid) === match[2];
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'; // alive, but another user's
  }
}

/** Field 22 of /proc/PID/stat (clock ticks since boot), or null where /proc cannot tell (or the PID is gone). */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}
