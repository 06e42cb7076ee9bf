/**
 * `larder edge --processes N` on Node: one primary process that serves nothing and N child processes (node:cluster
 * calls them workers) that each run the whole edge (startNodeEdge) on the one port and the one store. The primary
 * accepts connections and hands each to a child in turn (cluster's round robin: an even spread, and its cost is per
 * connection, which Bazel keeps open); every request on a connection is then that child's alone. The children share
 * the disk folder under the store's multi-process rules (shared/storage/disk.ts, owner.ts, disk-ledger.ts).
 *
 * Lifetime: SIGTERM/SIGINT to the primary stops every child, then the primary. A child that dies is replaced. A
 * primary that dies, even by SIGKILL, closes the IPC channel, and cluster children exit at once when it closes, so no
 * child is left serving. Tests and scripts stop the edge by the primary's PID; its listening line names the children.
 */
import cluster, { type Worker } from 'node:cluster';
import process from 'node:process';
import type { EdgeConfig } from '../shared/config.ts';
import type { EdgeProcesses } from './processes.ts';
import { listeningLine } from './start.ts';

/** In the primary: forks `config.processes` children running the same command line, and waits until all listen. */
export async function startEdgeProcesses(config: EdgeConfig): Promise<EdgeProcesses> {
  let stopping = false;
  const listening = new Map<Worker, number>();
  const fork = () => cluster.fork({ LARDER_EDGE_CHILD: '1' });
  const ready = new Promise<number>((resolve, reject) => {
    cluster.on('listening', (child, address) => {
      listening.set(child, address.port);
      if (listening.size === config.processes) resolve(address.port);
    });
    cluster.on('exit', (child, code, signal) => {
      const wasListening = listening.delete(child);
      if (stopping) return;
      // One that never listened failed at start (a bad folder, a port in use): the others would fail alike.
      if (!wasListening)
        return reject(new Error(`edge process ${child.process.pid} exited (${signal ?? code}) before listening`));
      console.error(`larder edge: process ${child.process.pid} exited (${signal ?? code}); starting another`);
      const next = fork();
      next.once('listening', () => console.error(`larder edge: process ${next.process.pid} serves in its place`));
    });
  });
  const close = async () => {
    stopping = true;
    const children = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            child.process.kill('SIGTERM');
          }),
      ),
    );
  };
  for (let i = 0; i < config.processes; i++) fork();
  let port: number;
  try {
    port = await ready;
  } catch (err) {
    await close();
    throw err;
  }
  const pids = [...listening.keys()].map((w) => w.process.pid).join(', ');
  console.log(
    `${listeningLine('node', config.listen.host, port, config.tls !== null)} (${config.processes} processes: ${pids})`,
  );
  return { close };
}

/** True in a child process forked by startEdgeProcesses: it serves, and leaves announcing to the primary. */
export function isEdgeChildProcess(): boolean {
  return cluster.isWorker && process.env.LARDER_EDGE_CHILD === '1';
}
