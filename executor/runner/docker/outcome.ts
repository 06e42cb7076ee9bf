/** Small pieces both ways of running share: waiting for a stream's end, bounded, and the OOM note. */
import type { Socket } from 'node:net';
import type { DockerLimits } from './container.ts';

/** After the process is gone its output stream closes at once; past this, something else holds it open. */
const DRAIN_LIMIT_MS = 2_000;

/** Resolves when the socket closes, or DRAIN_LIMIT_MS after `after` resolves (then the socket is destroyed). */
export function streamClosed(socket: Socket, after?: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    socket.once('error', () => socket.destroy());
    after?.then(
      () => setTimeout(() => socket.destroy(), DRAIN_LIMIT_MS).unref(),
      () => undefined,
    );
  });
}

export function oomNote(limits: DockerLimits): string {
  const mib = Math.round(limits.memoryBytes / 1024 / 1024);
  return `\nlarder: the action was killed for running out of memory (the container's limit is ${mib} MiB, --docker-memory)\n`;
}
