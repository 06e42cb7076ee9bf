/**
 * One persistent worker process and the conversation with it: one WorkRequest at a time (singleplex), answered by
 * one WorkResponse. The process lives behind a `WorkerChannel` (stdin, stdout, stderr), so the same code talks to
 * a local process (spawnLocalWorker) and to a long-lived exec in a container.
 *
 * A worker that exits, writes something that is not a response, answers the wrong request or takes longer than
 * the action's timeout is broken for good: it is killed (a late answer would be read as the next action's), and
 * the caller replaces it.
 */
import { create } from '@bufbuild/protobuf';
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { LarderError } from '../../../shared/errors.ts';
import { type WorkResponse, WorkRequestSchema } from '../../../shared/proto/gen/blaze/worker/worker_protocol_pb.ts';
import { groupGone, signalGroup } from '../../runner/process-group.ts';
import type { Bubblewrap } from '../../runner/sandbox/bubblewrap.ts';
import type { Identity } from '../../runner/sandbox/identities.ts';
import { encodeRequest, ResponseReader, type WorkerProtocol } from './framing.ts';

export interface WorkerChannel {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** Kills the process and everything it started; resolves when nothing of it is left. */
  kill(): Promise<void>;
}

/** Why a request failed: the worker is unusable afterwards in every case. */
export type WorkerFailureKind = 'crashed' | 'garbage' | 'timeout' | 'cancelled';

export class WorkerFailure extends LarderError {
  constructor(
    readonly kind: WorkerFailureKind,
    message: string,
  ) {
    super(kind === 'timeout' ? 'timeout' : 'internal', message);
  }
}

/** The last bytes of a worker's stderr kept for the action's logs. */
const STDERR_TAIL_BYTES = 64 * 1024;

export interface WorkRequestInit {
  arguments: string[];
  inputs: Array<{ path: string; digest: Uint8Array }>;
}

export class WorkerProcess {
  /** Requests answered so far. */
  requests = 0;
  private broken: string | null = null;
  private nextId = 1;
  private stderrTail = '';
  private readonly reader: ResponseReader;
  private pending: { id: number; resolve: (r: WorkResponse) => void; reject: (e: Error) => void } | null = null;

  constructor(
    private readonly channel: WorkerChannel,
    readonly protocol: WorkerProtocol,
  ) {
    this.reader = new ResponseReader(protocol);
    channel.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    channel.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk));
    channel.stdin.on('error', () => undefined); // EPIPE after a crash is reported through `exited`
    void channel.exited.then(() => this.fail('crashed', 'the worker process exited'));
  }

  get usable(): boolean {
    return this.broken === null;
  }

  /** What the worker wrote to stderr lately (its own diagnostics, not the actions' output). */
  stderr(): string {
    return this.stderrTail;
  }

  /** Sends one request and waits for its response, at most `timeoutMs`; a failure leaves the worker killed. */
  async request(init: WorkRequestInit, timeoutMs: number, signal: AbortSignal): Promise<WorkResponse> {
    if (this.broken !== null) throw new WorkerFailure('crashed', this.broken);
    if (this.pending !== null) throw new Error('a singleplex worker takes one request at a time');
    const id = this.nextId++;
    const request = create(WorkRequestSchema, { arguments: init.arguments, inputs: init.inputs, requestId: 0 });
    const answer = new Promise<WorkResponse>((resolve, reject) => (this.pending = { id, resolve, reject }));
    const timer = setTimeout(
      () => this.fail('timeout', `the worker did not answer within ${timeoutMs / 1000} s`),
      timeoutMs,
    );
    const cancelled = () => this.fail('cancelled', 'the action was cancelled');
    signal.addEventListener('abort', cancelled, { once: true });
    try {
      this.channel.stdin.write(encodeRequest(this.protocol, request));
      const response = await answer;
      this.requests++;
      return response;
    } catch (err) {
      await this.channel.kill();
      throw err;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', cancelled);
      this.pending = null;
    }
  }

  async kill(): Promise<void> {
    this.fail('crashed', 'the worker was stopped');
    await this.channel.kill();
  }

  private onStdout(chunk: Buffer): void {
    let responses: WorkResponse[];
    try {
      responses = this.reader.push(chunk);
    } catch (err) {
      this.fail('garbage', (err as Error).message);
      return;
    }
    for (const response of responses) {
      const pending = this.pending;
      // Singleplex workers answer with request_id 0; anything else, or an answer nobody asked for, is garbage.
      if (pending === null || response.requestId !== 0) {
        this.fail('garbage', `the worker wrote a response nobody asked for (request_id ${response.requestId})`);
        return;
      }
      this.pending = null;
      pending.resolve(response);
    }
  }

  private fail(kind: WorkerFailureKind, message: string): void {
    if (this.broken === null) this.broken = message;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(new WorkerFailure(kind, message));
  }
}

export interface LocalWorkerSpec {
  argv: readonly string[];
  /** The slot's directory: the worker's working directory and the one place it may write. */
  cwd: string;
  env: Readonly<Record<string, string>>;
  user: Identity | null;
}

/**
 * A worker as a local process in a sandbox of its own (the slot's directory its only writable place, no network,
 * its own PID namespace, unless `sandbox` is null) and in a process group of its own, so killing it leaves
 * nothing behind.
 */
export function spawnLocalWorker(spec: LocalWorkerSpec, sandbox: Bubblewrap | null): WorkerChannel {
  const argv =
    sandbox === null
      ? spec.argv
      : sandbox.argv({ execRoot: spec.cwd, cwd: spec.cwd, network: false, rootIsInput: false }, spec.argv, spec.user);
  const [program, ...args] = argv;
  const child = spawn(program!, args, {
    cwd: spec.cwd,
    env: { ...spec.env },
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(spec.user === null ? {} : { uid: spec.user.uid, gid: spec.user.gid }),
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  return {
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    async kill() {
      if (child.pid === undefined) return;
      signalGroup(child.pid, 'SIGKILL');
      await exited;
      await groupGone(child.pid);
    },
  };
}
