/**
 * Pieces of a fleet for the fleet suites: frontends (`larder executor --workers 0 --queue redis://…`) sharing
 * one disk store, `larder worker` processes on the host's Node or on an arm64 Node under qemu, each stopped (or
 * killed) by PID.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import {
  type ActionResult,
  ActionResultSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { IN_CI, REPO_ROOT } from '../../helpers/tools.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';

export interface Arm64Toolchain {
  node: string;
  sysroot: string;
}

/**
 * Runs scripts/arm64-setup.sh (idempotent, cached under ~/.cache/larder-test/arm64) and returns its paths, or
 * null (a skip with a message) where it cannot run; in CI that is a failure.
 */
export function arm64Toolchain(): Arm64Toolchain | null {
  try {
    const out = execFileSync('bash', [join(REPO_ROOT, 'scripts/arm64-setup.sh')], {
      encoding: 'utf8',
      timeout: 600_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const fields = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .at(-1)!
        .split(' ')
        .map((kv) => kv.split('=') as [string, string]),
    );
    return { node: fields.node!, sysroot: fields.sysroot! };
  } catch (err) {
    const message = `arm64 emulation is not available (scripts/arm64-setup.sh failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message})`;
    if (IN_CI) throw new Error(`CI=true and ${message}`);
    console.warn(`skipping: ${message}`);
    return null;
  }
}

export const FAST_LEASE = '3s';

/** A frontend of the fleet: no workers of its own, the shared queue, the shared store. */
export function startFrontend(options: { redis: string; store: string; args?: string[] }): Promise<ExecutorProcess> {
  return startExecutorProcess([
    '--workers',
    '0',
    '--queue',
    options.redis,
    '--queue-lease',
    FAST_LEASE,
    '--store',
    `disk:${options.store}`,
    ...(options.args ?? []),
  ]);
}

export interface WorkerProcess {
  /** The worker's name, as ExecutedActionMetadata.worker reports it. */
  name: string;
  /** The platform it announced, `Arch=amd64, OSFamily=linux`. */
  platform: string;
  pid: number;
  /** http://HOST:PORT of its /metrics and /status (with --metrics-listen), else null. */
  metricsUrl: string | null;
  /** How it exited, once it has. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** Sends it a signal (SIGSTOP: its pool stops without leaving; SIGCONT: it goes on). */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM (it hands running jobs back), then SIGKILL after 15 s. */
  stop(): Promise<void>;
  /** SIGKILL: as if the host died. */
  kill(): Promise<void>;
}

export async function startWorker(options: {
  redis: string;
  frontend: string;
  concurrency?: number;
  arm64?: Arm64Toolchain;
  args?: string[];
  /** How long to wait for the ready line; the emulated Node takes ~10–30 s to load larder. */
  startTimeoutMs?: number;
}): Promise<WorkerProcess> {
  const workDir = reachableTempDir('larder-worker-');
  const args = [
    join(REPO_ROOT, 'bin/larder.js'),
    'worker',
    '--queue',
    options.redis,
    '--queue-lease',
    FAST_LEASE,
    '--frontend',
    options.frontend,
    '--work-dir',
    join(workDir, 'work'),
    '--concurrency',
    String(options.concurrency ?? 2),
    '--log-level',
    'warn',
    ...(options.args ?? []),
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (options.arm64 !== undefined) {
    // See shared/docs/arm64.md: glibc from the sysroot for the emulated Node; NODE_EXTRA_CA_CERTS costs ~1 s of
    // emulated CPU per start. larder runs as the compiled JavaScript of dist/: nothing native is needed.
    delete env.NODE_EXTRA_CA_CERTS;
    env.QEMU_LD_PREFIX = options.arm64.sysroot;
  }
  const child: ChildProcess = spawn(options.arm64?.node ?? process.execPath, args, {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const serving = (options.args ?? []).includes('--metrics-listen');
  const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(child.pid!, 'SIGKILL');
      reject(new Error(`worker did not start in time:\n${output}`));
    }, options.startTimeoutMs ?? 30_000);
    const check = () => {
      const match = /larder worker ready: (\S+) \[([^\]]*)\]/.exec(output);
      // Its metrics line follows the ready line when it serves them.
      if (match && (!serving || /larder worker metrics on /.test(output))) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}:\n${output}`));
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    name: ready[1]!,
    platform: ready[2]!,
    pid: child.pid!,
    metricsUrl: /larder worker metrics on (\S+)\/metrics/.exec(output)?.[1] ?? null,
    exited,
    output: () => output,
    signal: (signal) => void (running() && process.kill(child.pid!, signal)),
    async stop() {
      if (running()) {
        process.kill(child.pid!, 'SIGTERM');
        const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(workDir, { recursive: true, force: true });
    },
    async kill() {
      if (running()) {
        process.kill(child.pid!, 'SIGKILL');
        await exited;
      }
    },
  };
}

/** Every ActionResult in the disk store's action cache (default instance). */
export async function actionResults(store: string): Promise<ActionResult[]> {
  const root = join(store, 'blobs', '_', 'ac');
  const out: ActionResult[] = [];
  for (const prefix of await readdir(root)) {
    for (const name of await readdir(join(root, prefix)))
      out.push(fromBinary(ActionResultSchema, await readFile(join(root, prefix, name))));
  }
  return out;
}
