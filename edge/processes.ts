/**
 * `larder edge --processes N` on Bun and Deno: a primary that serves nothing starts N child processes running the
 * same entry, and each child serves the whole edge on the one port with SO_REUSEPORT (`reusePort`), so the kernel
 * spreads new connections over them. The children share the disk folder under the same multi-process rules as the
 * Node cluster's (shared/storage/disk.ts, owner.ts, disk-ledger.ts). The first child binds the asked port (port 0:
 * any free one) and says which; the others then bind that one.
 *
 * Lifetime, as on Node (node-processes.ts): SIGTERM/SIGINT to the primary stops every child, then the primary; a
 * child that dies is replaced; a primary that dies, even by SIGKILL, leaves no child serving: each child holds the
 * read end of a pipe from the primary as its stdin and exits when it closes (watchPrimary).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import process from 'node:process';
import type { EdgeConfig } from '../shared/config.ts';
import { listeningLine } from './start.ts';

/** Set in a child's environment: it serves and leaves announcing to the primary. */
const CHILD = 'LARDER_EDGE_CHILD';
/** Set in a child's environment once the first child has bound the port: the port to bind with reusePort. */
const CHILD_PORT = 'LARDER_EDGE_CHILD_PORT';
/** The line a child prints once it listens; the primary reads it and passes every other line on. */
const READY = /^larder edge process ready on port (\d+)$/;

/** How to run the entry again, as a child: the runtime's executable and its arguments (script and options). */
export interface EntryCommand {
  command: string;
  args: string[];
}

export interface EdgeProcesses {
  /** Stops every child process (SIGTERM, as one process would be stopped) and resolves once all have exited. */
  close(): Promise<void>;
}

/** True in a child started by startEdgeChildren. */
export function isEdgeChild(): boolean {
  return process.env[CHILD] === '1';
}

/** In a child: the port the primary said to bind, or the configured one for the first child. */
export function childPort(config: EdgeConfig): number {
  const port = process.env[CHILD_PORT];
  return port === undefined ? config.listen.port : Number(port);
}

/** In a child, once it listens: tells the primary the port (a line on stdout) and exits when the primary goes. */
export function childReady(port: number): void {
  console.log(`larder edge process ready on port ${port}`);
  watchPrimary();
}

/** The primary's end of the stdin pipe closes when it exits, however it exits: then so does this child. */
function watchPrimary(): void {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

/** In the primary: starts `config.processes` children of `entry` and resolves once all listen on one port. */
export async function startEdgeChildren(
  config: EdgeConfig,
  runtime: string,
  entry: EntryCommand,
): Promise<EdgeProcesses> {
  const children = new Set<ChildProcess>();
  let stopping = false;
  let port: number | undefined;

  const start = (): Promise<ChildProcess> =>
    new Promise((resolve, reject) => {
      const env = { ...process.env, [CHILD]: '1', ...(port === undefined ? {} : { [CHILD_PORT]: String(port) }) };
      const child = spawn(entry.command, entry.args, { env, stdio: ['pipe', 'pipe', 'inherit'] });
      children.add(child);
      let listening = false;
      let pending = '';
      child.stdout!.setEncoding('utf8').on('data', (text: string) => {
        pending += text;
        const lines = pending.split('\n');
        pending = lines.pop()!;
        for (const line of lines) {
          const ready = READY.exec(line);
          if (ready === null) process.stdout.write(`${line}\n`);
          else if (!listening) {
            listening = true;
            port ??= Number(ready[1]);
            resolve(child);
          }
        }
      });
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        children.delete(child);
        if (stopping) return;
        // One that never listened failed at start (a bad folder, a port in use): the others would fail alike.
        if (!listening)
          return reject(new Error(`edge process ${child.pid} exited (${signal ?? code}) before listening`));
        console.error(`larder edge: process ${child.pid} exited (${signal ?? code}); starting another`);
        start().then(
          (next) => console.error(`larder edge: process ${next.pid} serves in its place`),
          (err: unknown) => console.error(`larder edge: ${(err as Error).message}`),
        );
      });
    });

  const close = async () => {
    stopping = true;
    await Promise.all(
      [...children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
  };

  try {
    await start();
    await Promise.all(Array.from({ length: config.processes - 1 }, start));
  } catch (err) {
    await close();
    throw err;
  }
  const pids = [...children].map((child) => child.pid).join(', ');
  console.log(
    `${listeningLine(runtime, config.listen.host, port!, config.tls !== null)} (${config.processes} processes: ${pids})`,
  );
  return { close };
}
