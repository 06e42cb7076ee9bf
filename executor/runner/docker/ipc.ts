/**
 * What one action leaves in a warm container's IPC namespace rather than in its files: System V shared memory,
 * message queues and semaphore sets, and POSIX message queues. Each would be there for the next action of the
 * container, so they are removed from the host between actions, with no tool needed in the image:
 *
 * - System V objects by util-linux's `ipcrm --all`, started by `nsenter` in the container's IPC namespace only
 *   (the host's binaries and file system). Entering a namespace needs root: without it warm containers cannot be
 *   cleared, and so are never reused (canClearSysvIpc, checked once at start).
 * - POSIX message queues are files of the container's mqueue mount (/dev/mqueue), removed through
 *   /proc/PID/root like /dev/shm's.
 */
import { execFile } from 'node:child_process';

/** nsenter and ipcrm take milliseconds; past this something is wrong, and the container is removed instead. */
const CLEAR_LIMIT_MS = 10_000;

/** Whether this process may enter a container's IPC namespace (root), so that warm containers can be cleared. */
export function canClearSysvIpc(): boolean {
  return process.getuid?.() === 0;
}

/** Removes every System V IPC object of the IPC namespace of host process `pid` (a container's init). */
export function clearSysvIpc(pid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      'nsenter',
      [`--target=${pid}`, '--ipc', '--', 'ipcrm', '--all'],
      { timeout: CLEAR_LIMIT_MS, killSignal: 'SIGKILL' },
      (err, _stdout, stderr) => {
        if (err === null) resolve();
        else
          reject(new Error(`could not remove the container's System V IPC objects: ${stderr.trim() || err.message}`));
      },
    );
  });
}
