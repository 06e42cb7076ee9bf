// ByteStream Writes to a disk store whose file system fills up below the store's budget, against a real `larder
// executor` on an 8 MiB tmpfs of its own (a user and mount namespace: no privileges needed, no mount left behind).
// Such a Write is recorded into a file the store then adopts (write.ts), so it meets the full disk there, not in
// the store: it must make room the way the store's own uploads do, never publish a short file, and say what is
// wrong when no room can be made.
import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireUnshare } from '../helpers/tools.ts';
import {
  type Clients,
  clientsFor,
  codeOf,
  type ExecutorProcess,
  reachableTempDir,
  readAll,
  startExecutorProcess,
  writeRequests,
} from './helpers.ts';

const MiB = 1024 * 1024;

describe.runIf(requireUnshare())('ByteStream Write on a full disk (an 8 MiB tmpfs under a 64 MiB budget)', () => {
  const dir = reachableTempDir('larder-write-full-');
  let executor: ExecutorProcess;
  let clients: Clients;
  beforeAll(async () => {
    executor = await startExecutorProcess(['--store', `disk:${dir}@64MiB`, '--workers', '0'], {}, undefined, [
      'unshare',
      '-rm',
      'sh',
      '-c',
      'mount -t tmpfs -o size=8m larder-test "$0" && exec "$@"',
      dir,
    ]);
    clients = clientsFor(executor.url.replace(/^grpc:\/\//, ''));
  }, 60_000);
  afterAll(async () => {
    clients?.close();
    await executor?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes `data`; resolves with its hash and the Write's outcome. */
  const write = (data: Buffer) => {
    const hash = createHash('sha256').update(data).digest('hex');
    const name = `uploads/${randomUUID()}/blobs/${hash}/${data.byteLength}`;
    return { hash, written: clients.bytestream.write(writeRequests(name, data)) };
  };

  it('evicts the oldest blobs and goes on when the disk fills, and every blob it keeps is whole', async () => {
    const blobs = Array.from({ length: 5 }, () => randomBytes(3 * MiB));
    const hashes: string[] = [];
    for (const [i, data] of blobs.entries()) {
      const { hash, written } = write(data);
      expect((await written).committedSize, `Write ${i}`).toBe(BigInt(data.byteLength));
      hashes.push(hash);
    }
    expect(Buffer.compare(await readAll(clients, `blobs/${hashes.at(-1)}/${3 * MiB}`), blobs.at(-1)!)).toBe(0);
    expect((await codeOf(readAll(clients, `blobs/${hashes[0]}/${3 * MiB}`))).code).toBe(grpc.status.NOT_FOUND);
  }, 60_000);

  it('answers RESOURCE_EXHAUSTED, saying the disk is full, for a blob no eviction can make room for', async () => {
    const data = randomBytes(12 * MiB);
    const { hash, written } = write(data);
    const err = await codeOf(written);
    expect(err.code, err.details).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/disk is full/);
    expect((await codeOf(readAll(clients, `blobs/${hash}/${data.byteLength}`))).code).toBe(grpc.status.NOT_FOUND);
  }, 60_000);
});
