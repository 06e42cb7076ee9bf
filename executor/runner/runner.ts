/**
 * How a staged action's command is run. The worker stages inputs and collects outputs; a runner only starts
 * the command in the prepared directory and reports how it ended. `local` runs a process on this host
 * in a sandbox (local-runner.ts); `docker` runs it in a container (docker/).
 */
import type { RunnerKind } from '../reapi/platform.ts';

export interface RunRequest {
  /** argv; a relative program path is resolved against `cwd`, as REAPI says. */
  readonly argv: readonly string[];
  /** Exactly the action's environment: nothing of the server's leaks in. */
  readonly env: Readonly<Record<string, string>>;
  /** The staged execution root (a container runner mounts it at the same path). */
  readonly execRoot: string;
  /** Absolute working directory inside the staged execution root. */
  readonly cwd: string;
  readonly timeoutMs: number;
  /** Aborted when the operation is cancelled or the server stops: the run ends at once. */
  readonly signal: AbortSignal;
  /**
   * Files the command's stdout and stderr go to, each cut at `maxOutputBytes`; a runner may leave a stream that
   * carried nothing without a file (read it as empty).
   */
  readonly stdoutPath: string;
  readonly stderrPath: string;
  readonly maxOutputBytes: number;
  /** Run as this user (when the server runs as root); null runs as the server's own user. */
  readonly user: { uid: number; gid: number } | null;
  /** The action's runner options (container-image, network, filesystem-root, …). */
  readonly options: ReadonlyMap<string, string>;
}

export interface RunOutcome {
  /** The exit code; for a command killed by a signal, 128 + its number, as shells report it. */
  readonly exitCode: number;
  /** The signal that ended the command, if one did (SIGKILL after a timeout included). */
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly cancelled: boolean;
  /** Why the command could not be started at all (no such program, not executable…); exitCode is 127 then. */
  readonly startError: string | null;
  /** Output beyond maxOutputBytes was dropped. */
  readonly outputTruncated: boolean;
  /** stdout or stderr could not be written (`ENOSPC: …`): what was captured is incomplete, so never cache it. */
  readonly outputError?: string | null;
  /**
   * How many bytes the runner itself wrote into the stdout and stderr files, when it knows (0: the stream carried
   * nothing and no file was made); absent or null: read the files to find out.
   */
  readonly outputBytes?: { readonly stdout: number | null; readonly stderr: number | null } | null;
  /** The kernel killed the command for exceeding its memory limit (its cgroup or container; exitCode is 137 then). */
  readonly oomKilled?: boolean;
  readonly startedAt: Date;
  readonly endedAt: Date;
}

/** The outcome of a command that could not be started at all: exit code 127, as a shell reports it. */
export function notStarted(startError: string, startedAt: Date): RunOutcome {
  return {
    exitCode: 127,
    signal: null,
    timedOut: false,
    cancelled: false,
    startError,
    outputTruncated: false,
    outputError: null,
    startedAt,
    endedAt: new Date(),
  };
}

export interface Runner {
  readonly kind: RunnerKind;
  /** Runs the command; resolves only when no process the command started is left (the whole group is gone). */
  run(request: RunRequest): Promise<RunOutcome>;
}
