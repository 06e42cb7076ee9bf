/**
 * What the engine does not say about a running container, read from its cgroup on the host: whether the kernel
 * OOM-killed anything in it (an exec'd process killed for memory leaves State.OOMKilled false: that flag is only
 * set when the container's first process dies), and which processes are left in it. Both cgroup v1 (hybrid, as on
 * these machines) and v2 layouts are read; null means "cannot tell", which callers treat as unsafe.
 */
import { readFile } from 'node:fs/promises';

const ROOT = '/sys/fs/cgroup';

/** The container's cgroup directory for `controller` (v1), or its unified directory (v2), from its first process. */
async function cgroupDir(pid: number, controller: 'memory' | 'pids'): Promise<{ dir: string; v2: boolean } | null> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  let unified: string | null = null;
  for (const line of text.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined) continue;
    if (controllers.split(',').includes(controller)) return { dir: `${ROOT}/${controller}${path}`, v2: false };
    if (controllers === '') unified = path;
  }
  return unified === null ? null : { dir: `${ROOT}${unified}`, v2: true };
}

/** How many processes the kernel has OOM-killed in the container so far (null: unknown). */
export async function oomKills(pid: number): Promise<number | null> {
  const at = await cgroupDir(pid, 'memory');
  if (at === null) return null;
  const text = await readFile(`${at.dir}/${at.v2 ? 'memory.events' : 'memory.oom_control'}`, 'utf8').catch(() => null);
  const match = text === null ? null : /^oom_kill (\d+)$/m.exec(text);
  return match === null ? null : Number(match[1]);
}

/** Host PIDs of the processes in the container (null: unknown). */
export async function containerProcesses(pid: number): Promise<Set<number> | null> {
  const at = await cgroupDir(pid, 'pids');
  if (at === null) return null;
  const text = await readFile(`${at.dir}/cgroup.procs`, 'utf8').catch(() => null);
  if (text === null) return null;
  return new Set(
    text
      .split('\n')
      .filter((l) => l !== '')
      .map(Number),
  );
}
