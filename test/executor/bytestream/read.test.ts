// ByteStream Read's sender on its own (executor/bytestream/read.ts), over a real disk store: the message buffers a
// long Read reuses, and when it may reuse them. The Read over a real channel is in test/executor/bytestream.test.ts.
import { create } from '@bufbuild/protobuf';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { READ_CHUNK_BYTES, readBlob } from '../../../executor/bytestream/read.ts';
import { blobKey } from '../../../shared/digest.ts';
import { ReadRequestSchema } from '../../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { openStore } from '../../../shared/storage/from-config.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { digestOf, randomBytes, reachableTempDir, sha256 } from '../helpers.ts';

const MiB = 1024 * 1024;
const data = randomBytes(16 * MiB + 3, 11);
const { hash } = digestOf(data);
let dir: string;
let store: BlobStore;

beforeAll(async () => {
  dir = reachableTempDir('larder-read-test-');
  store = await openStore({ kind: 'disk', path: dir, maxBytes: 64 * MiB });
  await store.put(blobKey('', 'cas', hash), data, data.byteLength);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('reuses a few message buffers for a long Read, each only once its message has been written out', async () => {
  const received: Buffer[] = [];
  const pending: (() => void)[] = [];
  const request = create(ReadRequestSchema, { resourceName: `blobs/${hash}/${data.byteLength}` });
  const allocations = vi.spyOn(Buffer, 'allocUnsafeSlow');
  try {
    await readBlob({ store, zstd: null }, request, async (chunk, written) => {
      expect(chunk.byteLength).toBeLessThanOrEqual(READ_CHUNK_BYTES);
      const sent = Buffer.from(chunk);
      received.push(sent);
      // Written out a message later, as a transport with one message in flight does. Until then its memory must
      // hold what was sent: a buffer read into again would be detached (taken over) or hold other bytes.
      pending.push(() => {
        expect(Buffer.compare(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), sent)).toBe(0);
        written?.();
      });
      if (pending.length > 1) pending.shift()!();
    });
    expect(allocations.mock.calls.filter(([size]) => size >= READ_CHUNK_BYTES).length).toBe(2);
  } finally {
    allocations.mockRestore();
  }
  for (const write of pending) write();
  expect(sha256(Buffer.concat(received))).toBe(hash);
  expect(received.length).toBe(17);
});
