/**
 * larder under test: `larder edge` as its own process with a fresh disk store, exactly as a user would start it,
 * on Node (`bin/larder.js edge`), Deno (the deno.json `edge` task's line, run directly so the PID is the server's) or
 * Bun (`bun edge/bun.ts`, as `npm run edge:bun` runs it).
 * `nodeFlags` lets the bench add e.g. --cpu-prof (written when larder exits on SIGTERM); `root` points at another
 * checkout (BENCH_BEFORE) so an older larder runs side by side with this one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { serverHandle, type RunningServer } from './nginx.ts';
import { spawnTracked, stopChild } from './proc.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const DENO = join(REPO_ROOT, 'node_modules/@deno/linux-x64-glibc/deno');
const BUN = join(REPO_ROOT, 'node_modules/@oven/bun-linux-x64/bin/bun');
const READY = /larder edge \((?:node|deno|bun)\) listening on (http:\/\/\S+)/;

export interface LarderLaunch {
  storeDir: string;
  cpu: number | undefined;
  runtime?: 'node' | 'deno' | 'bun';
  /** Edge processes (--processes); omitted for a checkout older than the flag. */
  processes?: number;
  /** Another checkout of larder to run instead of this one (its bin/larder.js). */
  root?: string;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/x']. */
  nodeFlags?: string[];
}

export async function startLarder(launch: LarderLaunch): Promise<RunningServer> {
  const root = launch.root ?? REPO_ROOT;
  const edgeArgs = [
    '--listen',
    '127.0.0.1:0',
    '--store',
    `disk:${launch.storeDir}`,
    // Far above anything the bench writes, so no scenario pays for (or is skewed by) LRU eviction.
    '--max-size',
    '1TiB',
    '--log-level',
    'error',
    ...(launch.processes === undefined ? [] : ['--processes', String(launch.processes)]),
  ];
  const [command, args] =
    launch.runtime === 'deno'
      ? [DENO, [...denoTaskArgs(root), ...edgeArgs]]
      : launch.runtime === 'bun'
        ? [BUN, [join(root, 'edge/bun.ts'), ...edgeArgs]]
        : [process.execPath, [...(launch.nodeFlags ?? []), join(root, 'bin/larder.js'), 'edge', ...edgeArgs]];
  const child = spawnTracked(command, args, launch.cpu, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('larder did not print its listening line within 30 s')), 30_000);
    child.once('exit', (code, signal) => reject(new Error(`larder exited early (code ${code}, signal ${signal})`)));
    lines.on('line', (line) => {
      const match = READY.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      } else {
        process.stdout.write(`[larder] ${line}\n`);
      }
    });
  }).catch(async (err: unknown) => {
    await stopChild(child);
    throw err;
  });
  return serverHandle('larder', url, child);
}

/** `run --allow-… edge/deno.ts` from the deno.json task, as the test helper runs it. */
function denoTaskArgs(root: string): string[] {
  const tasks = JSON.parse(readFileSync(join(root, 'deno.json'), 'utf8')).tasks as Record<string, string>;
  return tasks.edge!.split(/\s+/).slice(1);
}
