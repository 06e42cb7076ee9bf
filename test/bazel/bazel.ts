// Harness for end-to-end tests against a real Bazel client (Debian's 4.2.3).
//
// Every BazelWorkspace is a private copy of test/bazel/workspace in a fresh
// temporary directory with its own output_user_root/output_base (and thus its
// own Bazel server), its own HOME, a fixed PATH, and a random nonce folded into
// every action key. Nothing touches ~/.cache/bazel or the caller's ~/.bazelrc.
// Every client invocation is bounded in time; a run that overstays is
// cancelled (SIGINT), then killed by PID along with its server.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { appendFile, chmod, cp, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The workspace that BazelWorkspace.create() copies unless told otherwise. */
export const WORKSPACE_TEMPLATE = join(dirname(fileURLToPath(import.meta.url)), 'workspace');

/** PATH handed to the Bazel client: fixed, so nothing depends on the caller's PATH. */
export const FIXED_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Default upper bound for one Bazel command (a cold C++ build takes seconds here). */
export const DEFAULT_TIMEOUT_MS = 300_000;

/** How long a cancelled (SIGINT) client gets before it and its server are killed. */
const CANCEL_GRACE_MS = 10_000;

/** The Bazel binary: $LARDER_BAZEL if set, else Debian's /usr/bin/bazel. */
export function bazelPath(): string {
  const fromEnv = process.env.LARDER_BAZEL;
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : '/usr/bin/bazel';
}

export interface BazelStatus {
  available: boolean;
  path: string;
  /** First line of `bazel --version` (Debian's build says "bazel no_version"). */
  version?: string;
  /** Why it is not available, for skip/fail messages. */
  reason?: string;
}

let cachedStatus: BazelStatus | undefined;

/** Probes the Bazel client once (`bazel --version`, which starts no server). */
export function bazelStatus(): BazelStatus {
  if (cachedStatus !== undefined) return cachedStatus;
  const path = bazelPath();
  try {
    accessSync(path, fsConstants.X_OK);
  } catch {
    cachedStatus = { available: false, path, reason: `${path} is missing or not executable` };
    return cachedStatus;
  }
  const probe = spawnSync(path, ['--version'], {
    cwd: tmpdir(),
    env: { PATH: FIXED_PATH, HOME: tmpdir() },
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (probe.error !== undefined || probe.status !== 0) {
    const why = probe.error?.message ?? `exit ${String(probe.status)}: ${probe.stderr.trim()}`;
    cachedStatus = { available: false, path, reason: `\`${path} --version\` failed (${why})` };
    return cachedStatus;
  }
  cachedStatus = { available: true, path, version: probe.stdout.trim().split('\n')[0] ?? '' };
  return cachedStatus;
}

/** Flags that make every action run on `executorUrl`, with no quiet fallback to a local run (`--remote_timeout` in s). */
export function remoteExecutionFlags(executorUrl: string, timeoutSeconds = 120): string[] {
  return [
    `--remote_executor=${executorUrl}`,
    '--spawn_strategy=remote',
    '--noremote_local_fallback',
    `--remote_timeout=${timeoutSeconds}`,
  ];
}

export function bazelAvailable(): boolean {
  return bazelStatus().available;
}

// ---------------------------------------------------------------------------
// Output parsing

/**
 * Bazel's per-build execution summary, e.g.
 * `INFO: 10 processes: 8 remote cache hit, 2 internal.`
 */
export interface ProcessSummary {
  /** The leading count ("10 processes"). */
  total: number;
  /** "remote cache hit" (an HTTP or gRPC cache served the action result). */
  remoteCacheHit: number;
  /** "internal": Bazel-internal actions (symlink trees, workspace status, ...), never cached remotely. */
  internal: number;
  /** total - internal: processes that could have been a cache hit. */
  nonInternal: number;
  /** Every other kind, keyed as printed: "linux-sandbox", "processwrapper-sandbox", "local", "worker", "remote", "disk cache hit", ... */
  other: Record<string, number>;
  /** The line the numbers came from, without the "INFO: " prefix. */
  line: string;
}

// Color codes, in case a caller forces --color=yes.
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC is what an ANSI colour code starts with
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;
const SUMMARY_LINE = /(?:^|[\s)])INFO: ((\d+) process(?:es)?(?::[ \t]*([^\n]*?))?)\.[ \t]*$/gm;
const SUMMARY_PART = /^(\d+) ([A-Za-z][A-Za-z0-9 _-]*?)$/;

/**
 * Parses the last process summary line in Bazel's console output. Returns null
 * when there is none (e.g. the build failed during analysis). Throws on a line
 * that looks like a summary but does not parse, so format drift is loud.
 */
export function parseProcessSummary(output: string): ProcessSummary | null {
  const text = output.replace(ANSI, '').replace(/\r/g, '\n');
  let last: RegExpExecArray | null = null;
  for (const m of text.matchAll(SUMMARY_LINE)) last = m;
  if (last === null) return null;
  const line = last[1] ?? '';
  const total = Number(last[2]);
  const summary: ProcessSummary = { total, remoteCacheHit: 0, internal: 0, nonInternal: total, other: {}, line };
  const rest = (last[3] ?? '').trim();
  if (rest === '') return summary;
  for (const raw of rest.split(',')) {
    const part = SUMMARY_PART.exec(raw.trim());
    if (part === null)
      throw new Error(`unparseable part ${JSON.stringify(raw)} in process summary ${JSON.stringify(line)}`);
    const count = Number(part[1]);
    const kind = part[2] ?? '';
    if (kind === 'remote cache hit') summary.remoteCacheHit += count;
    else if (kind === 'internal') summary.internal += count;
    else summary.other[kind] = (summary.other[kind] ?? 0) + count;
  }
  summary.nonInternal = total - summary.internal;
  return summary;
}

/** "INFO: Build completed successfully, 10 total actions" → 10 (null if absent). */
export function parseTotalActions(output: string): number | null {
  let last: number | null = null;
  for (const m of output
    .replace(ANSI, '')
    .matchAll(/\bBuild (?:completed successfully|did NOT complete successfully), (\d+) total actions?\b/g)) {
    last = Number(m[1]);
  }
  return last;
}

// ---------------------------------------------------------------------------
// Running Bazel

export interface BazelRun {
  /** The full argv after the binary (startup options, command, flags, targets). */
  args: string[];
  /** Exit code; -1 when the client died from a signal (see signal/timedOut). */
  exitCode: number;
  signal: NodeJS.Signals | null;
  /** True when the run overstayed its timeout and was cancelled/killed. */
  timedOut: boolean;
  durationMs: number;
  stdout: string;
  /** Bazel writes its progress, INFO lines and errors here. */
  stderr: string;
  /** The process summary from stderr, or null if Bazel printed none. */
  summary: ProcessSummary | null;
  /** "N total actions" from the completion line, or null. */
  totalActions: number | null;
}

/** A short, readable account of a run, for assertion messages. */
export function describeRun(run: BazelRun, tailLines = 40): string {
  const end = run.signal !== null ? `killed by ${run.signal}` : `exit ${run.exitCode}`;
  const how = run.timedOut ? `timed out (${end})` : end;
  const tail = run.stderr.split('\n').slice(-tailLines).join('\n');
  return `bazel ${run.args.join(' ')}\n-> ${how} after ${run.durationMs} ms\n--- stderr (tail) ---\n${tail}`;
}

export interface RunOptions {
  /** Upper bound for this command; defaults to the workspace's timeout. */
  timeoutMs?: number;
}

export interface CreateOptions {
  /** Lines appended to the copy's .bazelrc (e.g. "build --remote_header=x=y"). */
  extraBazelrc?: string;
  /**
   * Folded into every action key via --action_env/--host_action_env, so that
   * workspaces never share cache entries by accident. Default: random. Pass the
   * same string to two workspaces to make them share keys; null to disable.
   */
  nonce?: string | null;
  /** Directory to copy instead of test/bazel/workspace. */
  template?: string;
  /** Default per-command timeout (ms). */
  timeoutMs?: number;
  /** Startup --max_idle_secs, so a server leaked by a crashed test dies on its own. */
  maxIdleSecs?: number;
  /** Extra environment for the client (the base is a fixed PATH, a private HOME and TMPDIR). */
  env?: Record<string, string>;
}

const live = new Set<BazelWorkspace>();

export class BazelWorkspace {
  /** Root of the temporary copy of the workspace (cwd of every command). */
  readonly root: string;
  /** Per-workspace temp directory holding root, output roots, HOME and TMPDIR. */
  readonly tempDir: string;
  readonly outputUserRoot: string;
  readonly outputBase: string;
  readonly nonce: string | null;
  readonly timeoutMs: number;
  private readonly env: Record<string, string>;
  private readonly startupArgs: string[];
  private closed = false;

  private constructor(tempDir: string, nonce: string | null, opts: CreateOptions) {
    this.tempDir = tempDir;
    this.root = join(tempDir, 'ws');
    this.outputUserRoot = join(tempDir, 'out');
    this.outputBase = join(tempDir, 'out', 'base');
    this.nonce = nonce;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.env = {
      ...opts.env,
      PATH: FIXED_PATH,
      HOME: join(tempDir, 'home'),
      TMPDIR: join(tempDir, 'tmp'),
      LANG: 'C.UTF-8',
      USER: process.env.USER ?? 'larder',
    };
    this.startupArgs = [
      `--output_user_root=${this.outputUserRoot}`,
      `--output_base=${this.outputBase}`,
      // Ignore the caller's ~/.bazelrc; the system rc stays (Debian's install_base lives there).
      '--nohome_rc',
      `--max_idle_secs=${opts.maxIdleSecs ?? 900}`,
    ];
  }

  /** Copies the template workspace into a fresh temp dir and prepares its .bazelrc. */
  static async create(opts: CreateOptions = {}): Promise<BazelWorkspace> {
    const tempDir = await mkdtemp(join(tmpdir(), 'larder-bazel-'));
    const nonce = opts.nonce === undefined ? randomBytes(8).toString('hex') : opts.nonce;
    const ws = new BazelWorkspace(tempDir, nonce, opts);
    try {
      const template = resolve(opts.template ?? WORKSPACE_TEMPLATE);
      // Skip convenience symlinks (bazel-bin, ...) left by someone building the template in place.
      await cp(template, ws.root, {
        recursive: true,
        filter: (src) => dirname(src) !== template || !basename(src).startsWith('bazel-'),
      });
      for (const dir of [ws.outputUserRoot, ws.env.HOME ?? '', ws.env.TMPDIR ?? '']) {
        await mkdir(dir, { recursive: true });
      }
      let rc = '\n# --- appended by test/bazel/bazel.ts ---\n';
      if (nonce !== null) {
        if (!/^[A-Za-z0-9_.-]+$/.test(nonce)) throw new Error(`nonce must match [A-Za-z0-9_.-]+: ${nonce}`);
        rc += `build --action_env=LARDER_NONCE=${nonce} --host_action_env=LARDER_NONCE=${nonce}\n`;
      }
      if (opts.extraBazelrc !== undefined) rc += `${opts.extraBazelrc}\n`;
      await appendFile(join(ws.root, '.bazelrc'), rc);
    } catch (err) {
      await forceRemove(tempDir);
      throw err;
    }
    live.add(ws);
    return ws;
  }

  /** Shuts down every workspace not yet shut down (for afterAll hooks). */
  static async shutdownAll(): Promise<void> {
    await Promise.all([...live].map((ws) => ws.shutdown()));
  }

  /** Runs `bazel <startup flags> <args…>` in the workspace, bounded in time. Never throws for a failing build. */
  run(args: string[], opts: RunOptions = {}): Promise<BazelRun> {
    if (this.closed) return Promise.reject(new Error('BazelWorkspace already shut down'));
    const fullArgs = [...this.startupArgs, ...args];
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const started = Date.now();
    return new Promise<BazelRun>((resolvePromise, reject) => {
      const child = spawn(bazelPath(), fullArgs, { cwd: this.root, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      let timedOut = false;
      let killTimer: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        timedOut = true;
        // Ask the client to cancel (it forwards the interrupt to the server) ...
        if (child.pid !== undefined) process.kill(child.pid, 'SIGINT');
        // ... and if that does not end it, kill the client and its server by PID.
        killTimer = setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
            try {
              process.kill(child.pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          this.killServer();
        }, CANCEL_GRACE_MS);
      }, timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        if (killTimer !== undefined) clearTimeout(killTimer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (killTimer !== undefined) clearTimeout(killTimer);
        // A cancelled command may leave the server busy; do not let it hold the lock.
        if (timedOut) this.killServer();
        const stdout = Buffer.concat(out).toString('utf8');
        const stderr = Buffer.concat(err).toString('utf8');
        let summary: ProcessSummary | null = null;
        try {
          summary = parseProcessSummary(stderr);
        } catch (e) {
          reject(e);
          return;
        }
        resolvePromise({
          args: fullArgs,
          exitCode: code ?? -1,
          signal,
          timedOut,
          durationMs: Date.now() - started,
          stdout,
          stderr,
          summary,
          totalActions: parseTotalActions(stderr),
        });
      });
    });
  }

  /** `bazel build <flags…> -- <targets…>`, e.g. flags ['--remote_cache=http://127.0.0.1:PORT/team-a']. */
  build(targets: string[], flags: string[] = [], opts: RunOptions = {}): Promise<BazelRun> {
    return this.run(['build', ...flags, '--', ...targets], opts);
  }

  /** `bazel clean` (keeps the server and external repositories); throws if it fails. */
  async clean(opts: RunOptions = {}): Promise<void> {
    const run = await this.run(['clean'], opts);
    if (run.exitCode !== 0) throw new Error(`bazel clean failed:\n${describeRun(run)}`);
  }

  /** Absolute path of a file under bazel-bin (e.g. "hello", "report.txt"). */
  outputPath(relPath: string): string {
    return join(this.root, 'bazel-bin', relPath);
  }

  /** Reads a file from bazel-bin. */
  readOutput(relPath: string): Promise<Buffer> {
    return readFile(this.outputPath(relPath));
  }

  /** PID of this workspace's Bazel server, or null if none is running. */
  serverPid(): number | null {
    let pid: number;
    try {
      pid = Number(readFileSync(join(this.outputBase, 'server', 'server.pid.txt'), 'utf8').trim());
    } catch {
      return null;
    }
    if (!Number.isInteger(pid) || pid <= 0) return null;
    try {
      process.kill(pid, 0);
      return pid;
    } catch {
      return null;
    }
  }

  private killServer(): void {
    const pid = this.serverPid();
    if (pid === null) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  /** `bazel shutdown`, kill the server by PID if it lingers, then delete every temp dir. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    try {
      await this.run(['shutdown'], { timeoutMs: 60_000 });
    } catch {
      // fall through to the PID kill
    } finally {
      this.closed = true;
      live.delete(this);
    }
    const pid = this.serverPid();
    if (pid !== null) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
      const deadline = Date.now() + 5_000;
      while (this.serverPid() !== null && Date.now() < deadline) await sleep(100);
      this.killServer();
    }
    await forceRemove(this.tempDir);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** rm -rf that also copes with the read-only directories Bazel leaves in its output base. */
async function forceRemove(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
    return;
  } catch {
    // make everything writable and retry
  }
  await makeWritable(dir);
  await rm(dir, { recursive: true, force: true });
}

async function makeWritable(dir: string): Promise<void> {
  try {
    await chmod(dir, 0o755);
  } catch {
    return;
  }
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.isDirectory()) await makeWritable(join(dir, e.name));
  }
}
