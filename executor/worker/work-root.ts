/**
 * Who owns a work folder. Everything a worker host makes outside it (containers on a shared Docker engine, action
 * cgroups) is marked with the folder's owner id, a random name kept in the folder, so that a run started after a
 * crash finds and removes what its predecessor left, and only that: two executors on one host (or two workers in
 * containers sharing the host's engine, both with a /work of their own) have different ids.
 *
 * A work folder serves one process at a time: the start-up sweep would otherwise remove a live neighbour's
 * containers and action folders. The running owner is recorded as its pid and start time (a reused pid has another
 * start time), and a second process is refused while that one lives. This guards against a misconfiguration, not
 * a race: two processes started in the same instant could both pass.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarderError } from '../../shared/errors.ts';

export interface WorkRoot {
  /** The folder's owner id: lowercase letters and digits, fit for a container label and a cgroup name. */
  readonly owner: string;
  /** Lets the next process have the folder (this one is stopping). */
  release(): Promise<void>;
}

const OWNER_FILE = 'owner';
const RUNNING_FILE = 'running';

/** Claims `workDir` (which must exist) for this process; refuses while another live process has it. */
export async function claimWorkRoot(workDir: string): Promise<WorkRoot> {
  const running = join(workDir, RUNNING_FILE);
  const holder = parseHolder(await readFile(running, 'utf8').catch(() => ''));
  if (holder !== null && holder.pid !== process.pid && startTimeOf(holder.pid) === holder.start)
    throw new LarderError(
      'invalid_argument',
      `--work-dir ${workDir} is in use by process ${holder.pid} (another larder executor or worker): give each its own work folder`,
    );
  const me = `${process.pid} ${startTimeOf(process.pid)}\n`;
  await writeFile(`${running}.${process.pid}`, me);
  await rename(`${running}.${process.pid}`, running);
  return {
    owner: await ownerId(workDir),
    async release() {
      if ((await readFile(running, 'utf8').catch(() => '')) === me) await rm(running, { force: true });
    },
  };
}

/** The folder's id, made once and kept for every later run. */
async function ownerId(workDir: string): Promise<string> {
  const path = join(workDir, OWNER_FILE);
  const kept = (await readFile(path, 'utf8').catch(() => '')).trim();
  if (/^[a-z0-9]{16,64}$/.test(kept)) return kept;
  const made = randomBytes(12).toString('hex');
  await writeFile(`${path}.${process.pid}`, `${made}\n`);
  await rename(`${path}.${process.pid}`, path);
  return made;
}

function parseHolder(text: string): { pid: number; start: string } | null {
  const match = /^(\d+) (\d+)\n$/.exec(text);
  return match === null ? null : { pid: Number(match[1]), start: match[2]! };
}

/** The process's start time since boot (field 22 of /proc/PID/stat), or '' when it is gone (or a zombie). */
function startTimeOf(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? '' : (fields[19] ?? '');
  } catch {
    return '';
  }
}
