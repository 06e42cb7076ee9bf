/**
 * Child-process plumbing shared by the server launchers: CPU pinning, readiness
 * waits, /proc readings (CPU time, RSS) and stopping by PID. Every process the bench starts is recorded
 * here and killed by its own PID if the bench exits early; nothing is ever stopped by name.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { availableParallelism } from 'node:os';

const started = new Set<ChildProcess>();

process.once('exit', () => {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p));

/** Which CPU each side gets: the server alone on one core, the load generator on the other. */
export interface Pinning {
  server?: number;
  generator?: number;
}

export function defaultPinning(enabled: boolean): Pinning {
  if (!enabled || TASKSET === undefined || availableParallelism() < 2) return {};
  return { server: 1, generator: 0 };
}

/** Spawns `command args`, under `taskset -c cpu` when a CPU is given (taskset execs, so the PID is the command's). */
export function spawnTracked(
  command: string,
  args: string[],
  cpu: number | undefined,
  options: SpawnOptions,
): ChildProcess {
  const child =
    cpu === undefined || TASKSET === undefined
      ? spawn(command, args, options)
      : spawn(TASKSET, ['-c', String(cpu), command, ...args], options);
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

/** Stops a child by its PID: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signal(child, 'SIGTERM');
  const timer = setTimeout(() => signal(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function signal(child: ChildProcess, name: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(child.pid, name);
  } catch {
    // exited meanwhile
  }
}

/** Waits until something accepts TCP connections on 127.0.0.1:port, for at most `timeoutMs`. */
export async function waitForPort(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`process ${child.pid} exited before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User + system CPU seconds the process (all its threads) has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU nanoseconds of a process so far, all its threads summed (from each thread's schedstat): a clock fine enough to
 * charge a 50 ms slice of work, where utime and stime count 10 ms ticks. A thread that exits takes its time along,
 * so use it on a process whose threads live as long as it does (a server).
 */
export function cpuNanoseconds(pid: number): number {
  let total = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return total;
}

/** CPU seconds of a process and all its descendants still running (`--processes N` serves from child processes). */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  try {
    total = cpuSeconds(pid);
  } catch {
    return 0; // gone
  }
  for (const child of childPids(pid)) total += treeCpuSeconds(child);
  return total;
}

/** Children of a process, from /proc/PID/task/TID/children (Linux). */
function childPids(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text !== '') children.push(...text.split(' ').map(Number));
    }
  } catch {
    // gone, or a kernel without the children file
  }
  return children;
}

/** A field of /proc/PID/status in KiB (VmRSS, VmHWM). */
export function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0); false when the kernel or permissions refuse. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS every `everyMs` until stopped; tracks the peak seen (a cross-check of VmHWM). */
export function sampleRss(pid: number, everyMs = 20): { stop(): number } {
  let peak = 0;
  const take = () => {
    try {
      peak = Math.max(peak, statusKiB(pid, 'VmRSS'));
    } catch {
      // process gone
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

/** Busy CPU seconds of the whole machine so far (all cores; idle and iowait excluded). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [, ...fields] = line.trim().split(/\s+/);
  const ticks = fields.map(Number);
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already inside user
  return (total - ticks[3]! - ticks[4]!) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Waits (at most `maxMs`) until the machine's background load is below `threshold` cores over a 0.3 s window,
 * so a run does not start while someone else's build is busy. Returns the last load seen.
 */
export async function waitForQuiet(threshold: number, maxMs: number): Promise<number> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const before = machineBusySeconds();
    await sleep(300);
    const load = (machineBusySeconds() - before) / 0.3;
    if (load < threshold || Date.now() >= deadline) return load;
  }
}
