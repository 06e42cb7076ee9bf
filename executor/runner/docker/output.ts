/**
 * stdout and stderr of a containerised command, from the demultiplexed stream into the RunRequest's files,
 * together cut at `limit` bytes like the local runner's (the rest is read and dropped, so the command never blocks
 * on a full pipe). Backpressure: when a file lags, the source socket is paused until it drains.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Socket } from 'node:net';
import { finished } from 'node:stream/promises';
import type { StreamId } from './frames.ts';

export class BoundedOutput {
  private readonly files: Record<StreamId, WriteStream>;
  private bytes = 0;
  truncated = false;

  constructor(
    paths: { stdout: string; stderr: string },
    private readonly limit: number,
  ) {
    this.files = {
      1: createWriteStream(paths.stdout, { mode: 0o600 }),
      2: createWriteStream(paths.stderr, { mode: 0o600 }),
    };
  }

  write(stream: StreamId, data: Buffer, source: Socket): void {
    const room = this.limit - this.bytes;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const kept = data.byteLength <= room ? data : data.subarray(0, room);
    if (kept !== data) this.truncated = true;
    this.bytes += kept.byteLength;
    const file = this.files[stream];
    if (!file.write(kept)) {
      source.pause();
      file.once('drain', () => source.resume());
    }
  }

  /** A note of larder's own on stderr (an OOM kill), outside the budget: the user must see why. */
  note(text: string): void {
    this.files[2].write(text);
  }

  async close(): Promise<void> {
    for (const file of Object.values(this.files)) file.end();
    await Promise.all(Object.values(this.files).map((file) => finished(file)));
  }
}
