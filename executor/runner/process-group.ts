/**
 * Process groups: every command larder starts (an action, a persistent worker) leads a group of its own, so that
 * killing it kills everything it started, and "finished" can mean "nothing of it is left".
 */
import { readdir, readFile } from 'node:fs/promises';

/** How long a group may take to vanish after SIGKILL before the caller goes on anyway (a stuck NFS read…). */
const GROUP_EXIT_LIMIT_MS = 10_000;

export function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone
  }
}

/**
 * Kills the group (SIGKILL, again at every look) and resolves once no live process of it is left. There is no event
 * for "a process group emptied", so this asks the kernel at a short interval, bounded in time. Killed processes whose
 * parent is gone wait as zombies until init reaps them, which some container inits do slowly or never; a zombie runs
 * no code and writes nothing, so on Linux the group counts as gone once /proc shows only zombies in it.
 */
export async function groupGone(pgid: number): Promise<void> {
  const deadline = Date.now() + GROUP_EXIT_LIMIT_MS;
  while (Date.now() < deadline) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      return; // ESRCH: nothing left at all
    }
    if (!(await hasLiveMember(pgid))) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Whether /proc lists a process of group `pgid` that is not a zombie (true where /proc cannot tell). */
async function hasLiveMember(pgid: number): Promise<boolean> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  } catch {
    return true;
  }
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid pgrp …; comm may contain spaces and parentheses, so parse from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}
