/**
 * The executor's side of the spawner (spawner-process.mjs): one helper process, started on first use and again
 * if it dies, that starts commands and copies their output to files, so that neither costs the executor's event
 * loop in proportion to the executor's memory. Killing and waiting for process groups stays here: the
 * executor owns the decision, and a group is killed by its id whoever started it.
 *
 * The spawner runs on Bun where npm installed it (the optional dependency the edge runs on), else on this Node.
 * Bun starts a command with vfork(2), which shares the spawner's memory until the exec; Node's libuv forks,
 * copying the spawner's page tables and faulting its pages back in, only to throw them away at the exec. Measured
 * on a 2-core host, 200 runs of /bin/true one after another (uid, setsid and pipes as the spawner asks): 2.3 ms
 * p50 to exit and 1.0 ms of the spawner's CPU each from Bun, 5.4 ms and 3.6 ms from Node.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const SPAWNER = fileURLToPath(new URL('./spawner-process.mjs', import.meta.url));

/** npm's package of Bun for each CPU larder runs on (package.json installs the x64 one). */
const BUN_PACKAGES: Partial<Record<NodeJS.Architecture, string>> = {
  x64: '@oven/bun-linux-x64',
  arm64: '@oven/bun-linux-aarch64',
};

/**
 * The Bun binary npm installed beside larder for this process's CPU, or null (an install without it, or another
 * CPU's: an arm64 worker under qemu must not start its commands from the host's x64 Bun).
 */
export function installedBun(): string | null {
  const bunPackage = BUN_PACKAGES[process.arch];
  if (bunPackage === undefined) return null;
  try {
    const path = createRequire(import.meta.url).resolve(`${bunPackage}/bin/bun`);
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return null;
  }
}

export interface SpawnRequest {
  argv: readonly string[];
  cwd: string;
  env: Readonly<Record<string, string>>;
  user: { uid: number; gid: number } | null;
  stdoutPath: string;
  stderrPath: string;
  maxOutputBytes: number;
  /** The cgroup files the spawner enters for the instant of fork, and its own to go back to (cgroups.ts). */
  cgroup: { enter: readonly string[]; leave: readonly string[] } | null;
}

export interface CapturedOutput {
  /** The output passed its bound and the rest was dropped. */
  truncated: boolean;
  /** Why the output could not be written (`ENOSPC: …`): what was captured is incomplete. */
  writeError: string | null;
  /**
   * Bytes written into each file; 0: the stream carried nothing, and no file was made. null: not known (the
   * spawner died), read the files.
   */
  stdoutBytes: number | null;
  stderrBytes: number | null;
}

export interface SpawnedCommand {
  /** The command's pid (= its process group id), or the reason it could not be started. */
  readonly started: Promise<{ pid: number } | { error: NodeJS.ErrnoException }>;
  /** The group leader's exit. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Both output pipes closed and the files written; `truncated` when the output passed its bound. */
  readonly output: Promise<CapturedOutput>;
  /** Stops waiting for the pipes, which a process that escaped the group may hold open forever. */
  abandon(): void;
}

type Message =
  | { type: 'started'; id: number; pid: number }
  | { type: 'error'; id: number; code: string; message: string }
  | { type: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null; output?: CapturedOutput }
  | ({ type: 'output'; id: number } & CapturedOutput);

interface Pending {
  started: (value: { pid: number } | { error: NodeJS.ErrnoException }) => void;
  exited: (value: { code: number | null; signal: NodeJS.Signals | null }) => void;
  output: (value: CapturedOutput) => void;
  /** 'exit' (or 'error') and 'output' arrive in either order; the entry goes once both have. */
  exitSeen: boolean;
  outputSeen: boolean;
}

export class Spawner {
  private child: ChildProcess | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  /** Whether a spawner on Bun ever answered: until one has, Bun may not be able to run here at all. */
  private bunAnswered = false;

  /** @param bun the Bun binary the spawner runs on; null: on this Node. */
  constructor(private bun: string | null = installedBun()) {}

  /** Which runtime the spawner process runs on. */
  get runtime(): 'bun' | 'node' {
    return this.bun === null ? 'node' : 'bun';
  }

  run(request: SpawnRequest): SpawnedCommand {
    const id = this.nextId++;
    let pending!: Pending;
    const started = new Promise<{ pid: number } | { error: NodeJS.ErrnoException }>(
      (resolve) => (pending = { started: resolve, exitSeen: false, outputSeen: false } as Pending),
    );
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve) => (pending.exited = resolve),
    );
    const output = new Promise<CapturedOutput>((resolve) => (pending.output = resolve));
    this.pending.set(id, pending);
    this.process().send({ type: 'run', id, ...request, env: { ...request.env } });
    return { started, exited, output, abandon: () => this.child?.send({ type: 'abandon', id }) };
  }

  close(): void {
    this.child?.disconnect();
    this.child = null;
  }

  private process(): ChildProcess {
    if (this.child?.connected) return this.child;
    // No loader flags: the spawner is plain JavaScript. On Node, without V8's background threads (compilation,
    // concurrent marking) each fork has fewer threads' memory to copy and fault back in, and the spawner's own
    // work is small: measured on a 2-core host, 3.5 instead of 4.0 ms of its CPU per command started, 8 at a time.
    // Bun is started in the spawner's own folder, so that no bunfig.toml or .env of the executor's working
    // directory configures it.
    const runtime =
      this.bun === null
        ? { execArgv: ['--single-threaded'] }
        : { execPath: this.bun, execArgv: [], cwd: dirname(SPAWNER) };
    const child = fork(SPAWNER, [], {
      ...runtime,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    const onBun = this.bun !== null;
    child.on('message', (message: Message) => {
      if (onBun) this.bunAnswered = true;
      this.onMessage(message);
    });
    let gone = false;
    /** `byItself`: it exited with a status (no signal killed it), or could not be started at all. */
    const ended = (byItself: boolean) => {
      if (gone) return;
      gone = true;
      // Not the current one any more: closed on purpose (close()), which a spawner that never answered may be too.
      const current = this.child === child;
      if (current) this.child = null;
      if (current && onBun && !this.bunAnswered && byItself) this.leaveBun();
      // Commands it was watching are orphaned: report them as failed rather than leave their actions hanging.
      // (Never sent again: one may have started before the spawner died, and must not run twice.)
      for (const [id, pending] of this.pending) {
        const error = Object.assign(new Error('the spawner process exited'), { code: 'ESPAWNER' });
        pending.started({ error });
        pending.exited({ code: null, signal: 'SIGKILL' });
        pending.output({ truncated: false, writeError: null, stdoutBytes: null, stderrBytes: null });
        this.pending.delete(id);
      }
    };
    child.once('exit', (_code, signal) => ended(signal === null));
    // It could not be started (EAGAIN, an exec the file system forbids: no pid, and no exit will follow), or a
    // message could not reach it (EPIPE: it died, and its exit, which follows, says how: a Bun that could not run
    // exits by itself, often before the first message is even sent). Unheard, the error would end the executor.
    child.on('error', () => {
      if (child.pid === undefined) ended(true);
    });
    // The spawner must not keep the executor alive on its own.
    child.unref();
    (child as unknown as { channel?: { unref(): void } }).channel?.unref();
    this.child = child;
    return child;
  }

  /**
   * Bun exited on its own before it ever answered, so it probably cannot run here (a binary for another C library,
   * a file system mounted noexec): from now on the spawner runs on Node.
   */
  private leaveBun(): void {
    process.stderr.write(`larder: the spawner could not run on Bun (${this.bun}); it runs on Node from now on\n`);
    this.bun = null;
  }

  private onMessage(message: Message): void {
    const pending = this.pending.get(message.id);
    if (pending === undefined) return;
    switch (message.type) {
      case 'started':
        pending.started({ pid: message.pid });
        break;
      case 'error':
        pending.started({ error: Object.assign(new Error(message.message), { code: message.code }) });
        pending.exited({ code: null, signal: null });
        pending.exitSeen = true;
        break;
      case 'exit':
        pending.exited({ code: message.code, signal: message.signal });
        pending.exitSeen = true;
        if (message.output !== undefined) {
          pending.output(message.output);
          pending.outputSeen = true;
        }
        break;
      case 'output':
        pending.output({
          truncated: message.truncated,
          writeError: message.writeError,
          stdoutBytes: message.stdoutBytes,
          stderrBytes: message.stderrBytes,
        });
        pending.outputSeen = true;
        break;
    }
    if (pending.exitSeen && pending.outputSeen) this.pending.delete(message.id);
  }
}
