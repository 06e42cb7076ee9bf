/** Reading a process's memory from /proc (Linux), to prove that bodies stream rather than buffer. */
import { readFileSync } from 'node:fs';

/** Peak resident set size (VmHWM) of a process, in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  if (!match) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(match[1]) / 1024;
}

/** Current resident set size (VmRSS) of a process, in MiB. */
export function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}

export interface RssWatch {
  /** Peak (VmHWM) when the watch started. */
  readonly baselineMiB: number;
  /** Throws if the process grew past the bound (or was killed for it); else returns the growth in MiB. */
  check(): number;
  stop(): void;
}

/**
 * Watches a process that must stay within `boundMiB` of its current peak. A process that grows past it is
 * killed at once (SIGKILL, by PID) rather than left to take the machine's memory: the test has failed anyway.
 * The samples only guard the machine; the verdict comes from the kernel's own peak, VmHWM.
 */
export function watchRss(pid: number, boundMiB: number, sampleMs = 10): RssWatch {
  const baselineMiB = peakRssMiB(pid);
  let killedAt: number | null = null;
  const timer = setInterval(() => {
    try {
      const rss = rssMiB(pid);
      if (rss - baselineMiB > boundMiB && killedAt === null) {
        killedAt = rss;
        process.kill(pid, 'SIGKILL');
      }
    } catch {
      clearInterval(timer); // the process is gone
    }
  }, sampleMs);
  timer.unref();
  return {
    baselineMiB,
    check() {
      if (killedAt !== null)
        throw new Error(
          `RSS reached ${killedAt.toFixed(0)} MiB, past ${baselineMiB.toFixed(0)} + ${boundMiB} MiB: killed`,
        );
      const grown = peakRssMiB(pid) - baselineMiB;
      if (grown > boundMiB) throw new Error(`peak RSS grew by ${grown.toFixed(1)} MiB, past the ${boundMiB} MiB bound`);
      return grown;
    },
    stop: () => clearInterval(timer),
  };
}

/** Bytes a process has passed to write(2) and friends so far (`wchar` in /proc/PID/io): files and sockets alike. */
export function writtenBytes(pid: number): number {
  const match = /^wchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  if (!match) throw new Error(`no wchar for pid ${pid}`);
  return Number(match[1]);
}
