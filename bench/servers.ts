/**
 * The servers a bench run can put side by side (BENCH_SERVERS), and how each is started. nginx is the reference;
 * every larder variant is compared with it in the same run:
 *
 *   nginx        the reference (WebDAV PUT, one worker, no hashing), pinned to the server CPU
 *   bazel-remote the Go peer (bench/bazel-remote.ts), pinned to the server CPU
 *   node         larder on Node, one process, pinned to the server CPU ('larder' is accepted for it)
 *   deno         larder on Deno, pinned to the server CPU
 *   bun          larder on Bun, pinned to the server CPU
 *   node-p2      larder on Node with --processes 2, on every CPU (it shares them with the load generator)
 *   deno-p2      the same on Deno (reusePort children)
 *   bun-p2       the same on Bun (reusePort children)
 *   node-before  the larder checkout at BENCH_BEFORE on Node (pinned), for before/after figures in one run
 *   deno-before  the same checkout on Deno
 *   bun-before   the same checkout on Bun
 */
import { startBazelRemote } from './bazel-remote.ts';
import { startLarder } from './larder.ts';
import { startNginx, type RunningServer } from './nginx.ts';
import type { Pinning } from './proc.ts';

export const SERVER_NAMES = [
  'nginx',
  'bazel-remote',
  'node',
  'deno',
  'bun',
  'node-p2',
  'deno-p2',
  'bun-p2',
  'node-before',
  'deno-before',
  'bun-before',
] as const;
export type ServerName = (typeof SERVER_NAMES)[number];

export function parseServerNames(list: string[], before: string | null): ServerName[] {
  const names = list.map((name) => (name === 'larder' ? 'node' : name));
  for (const name of names) {
    if (!(SERVER_NAMES as readonly string[]).includes(name))
      throw new Error(`unknown server ${name}; known: ${SERVER_NAMES.join(', ')}`);
    if (name.endsWith('-before') && before === null)
      throw new Error(`${name} needs BENCH_BEFORE=path of another larder checkout`);
  }
  return names as ServerName[];
}

export interface StartOptions {
  pinning: Pinning;
  /** The checkout of BENCH_BEFORE. */
  before: string | null;
  nodeFlags: string[];
}

export function startServer(name: ServerName, dir: string, options: StartOptions): Promise<RunningServer> {
  const cpu = options.pinning.server;
  const storeDir = `${dir}/store`;
  switch (name) {
    case 'nginx':
      return startNginx(dir, cpu);
    case 'bazel-remote':
      return startBazelRemote(dir, cpu);
    case 'node':
      return startLarder({ storeDir, cpu, processes: 1, nodeFlags: options.nodeFlags });
    case 'deno':
      return startLarder({ storeDir, cpu, runtime: 'deno', processes: 1 });
    case 'bun':
      return startLarder({ storeDir, cpu, runtime: 'bun', processes: 1 });
    case 'deno-p2':
      return startLarder({ storeDir, cpu: undefined, runtime: 'deno', processes: 2 });
    case 'bun-p2':
      return startLarder({ storeDir, cpu: undefined, runtime: 'bun', processes: 2 });
    case 'node-p2':
      return startLarder({ storeDir, cpu: undefined, processes: 2 });
    case 'node-before':
      return startLarder({ storeDir, cpu, root: options.before!, nodeFlags: options.nodeFlags });
    case 'deno-before':
      return startLarder({ storeDir, cpu, runtime: 'deno', root: options.before! });
    case 'bun-before':
      return startLarder({ storeDir, cpu, runtime: 'bun', root: options.before! });
  }
}
