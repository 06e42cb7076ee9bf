/** Starts a real `larder edge` process (Node, Deno or Bun) on a free loopback port, and stops it by PID. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EDGE_OPTIONS } from '../../shared/config.ts';
import { REPO_ROOT, bunPath, denoPath, requireTool } from './tools.ts';

/** `deploy`: edge/deploy.ts under Deno as Deno Deploy runs it (network and environment only, no files). */
export type Runtime = 'node' | 'deno' | 'bun' | 'deploy';

/**
 * The runtimes every edge suite runs on: Node, and Deno and Bun as `npm ci` installs them (a missing one fails the
 * run in CI, and is skipped with a message elsewhere).
 */
export function edgeRuntimes(): Runtime[] {
  return [
    'node',
    ...(requireTool('deno', denoPath(), 'npm ci installs it from @deno/linux-x64-glibc') ? (['deno'] as const) : []),
    ...(requireTool('bun', bunPath(), 'npm ci installs it from @oven/bun-linux-x64') ? (['bun'] as const) : []),
  ];
}

export interface EdgeProcess {
  readonly url: string;
  readonly pid: number;
  readonly output: () => string;
  /** Resolves once the output (stdout and stderr) matches, from the 'data' events; rejects after `timeoutMs`. */
  waitForOutput(pattern: RegExp | string, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL at once, as a crash would. */
  kill9(): Promise<void>;
}

export interface EdgeProcessOptions {
  runtime: Runtime;
  /**
   * Arguments after `larder edge`; --listen defaults to 127.0.0.1:0, --log-level to warn and --processes to 1 (one
   * process per test server, whose PID is the server's; pass --processes to test several).
   */
  args?: string[];
  env?: Record<string, string>;
  /** A command the server runs under, such as `prlimit --nofile=N:N`; it must exec the server (prlimit does), so the PID stays the server's. */
  wrapper?: string[];
}

const START_TIMEOUT_MS = 30_000;

export async function startEdgeProcess(options: EdgeProcessOptions): Promise<EdgeProcess> {
  const args = options.args ?? [];
  const withDefaults = [
    ...(args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0']),
    ...(args.includes('--log-level') ? [] : ['--log-level', 'warn']),
    ...(args.includes('--processes') ? [] : ['--processes', '1']),
    ...args,
  ];
  const [command, commandArgs] =
    options.runtime === 'node'
      ? [process.execPath, [join(REPO_ROOT, 'bin/larder.js'), 'edge', ...withDefaults]]
      : options.runtime === 'deno'
        ? [denoPath() ?? 'deno', [...denoTaskArgs('edge'), ...withDefaults]]
        : options.runtime === 'bun'
          ? [bunPath() ?? 'bun', [join(REPO_ROOT, 'edge/bun.ts'), ...withDefaults]]
          : // --no-prompt: a permission the task does not grant (any file access) fails at once, never waits for a person.
            [denoPath() ?? 'deno', ['run', '--no-prompt', ...denoTaskArgs('deploy').slice(1)]];
  const env = { ...(options.runtime === 'deploy' ? optionsAsEnv(withDefaults) : {}), ...options.env };
  const [wrapped, wrappedArgs] =
    options.wrapper === undefined
      ? [command, commandArgs]
      : [options.wrapper[0]!, [...options.wrapper.slice(1), command, ...commandArgs]];
  const child = spawn(wrapped, wrappedArgs, {
    cwd: REPO_ROOT,
    // Readable text logs, which the suites match; the JSON default for pipes has a suite of its own (test/log.test.ts).
    env: { ...process.env, LARDER_LOG_FORMAT: 'text', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const url = await waitForListening(child, () => output);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const matches = (pattern: RegExp | string) =>
    typeof pattern === 'string' ? output.includes(pattern) : pattern.test(output);
  return {
    url,
    pid: child.pid!,
    output: () => output,
    waitForOutput(pattern, timeoutMs = 10_000) {
      if (matches(pattern)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!matches(pattern)) return;
          done();
          resolve();
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${String(pattern)} in the edge's output within ${timeoutMs} ms:\n${output}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          child.stderr!.off('data', check);
        };
        child.stdout!.on('data', check);
        child.stderr!.on('data', check);
      });
    },
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * The `deno run …` line of a deno.json task, so the test runs exactly what `deno task edge` runs, but as a
 * direct child whose PID is the server's (deno task would put a task runner between us).
 */
function denoTaskArgs(task: string): string[] {
  const tasks = JSON.parse(readFileSync(join(REPO_ROOT, 'deno.json'), 'utf8')).tasks as Record<string, string>;
  const [deno, ...args] = tasks[task]!.split(/\s+/);
  if (deno !== 'deno') throw new Error(`deno.json task ${task} should start with "deno"`);
  return args;
}

function waitForListening(child: ChildProcess, output: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`edge did not start within ${START_TIMEOUT_MS} ms:\n${output()}`));
    }, START_TIMEOUT_MS);
    const check = () => {
      const match = /listening on (https?:\/\/\S+)/.exec(output());
      if (match) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`edge exited (${code ?? signal}) before listening:\n${output()}`));
    });
  });
}

/** `--flag value` arguments as their LARDER_* twins, for the Deno Deploy entry, which reads only the environment. */
function optionsAsEnv(args: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const row = EDGE_OPTIONS.find((r) => `--${r.flag}` === args[i]);
    if (row === undefined) throw new Error(`${args[i]} is not an edge option`);
    env[row.env] = row.boolean ? 'on' : args[++i]!;
  }
  return env;
}

/** A temp folder removed by the returned function. */
export function tempDir(prefix = 'larder-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
