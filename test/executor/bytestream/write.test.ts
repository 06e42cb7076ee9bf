// ByteStream Write into a disk store hands each message back once it is written and hashed, so grpc-js decodes the
// next ones into the same few buffers (executor/grpc/lent-frames.ts) instead of a fresh one per message.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { PartialUploads } from '../../../executor/bytestream/partial-uploads.ts';
import { writeBlob } from '../../../executor/bytestream/write.ts';
import { allowLentFrames } from '../../../executor/grpc/lent-frames.ts';
import { blobKey } from '../../../shared/digest.ts';
import { createLogger } from '../../../shared/log.ts';
import { WriteRequestSchema, type WriteRequest } from '../../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { DiskStore } from '../../../shared/storage/disk.ts';
import { digestOf, randomBytes, sha256 } from '../helpers.ts';

const MESSAGE = 256 * 1024;
const MESSAGES = 12;

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('decodes a large upload into a few buffers, handed back as each message is written, and stores it intact', async () => {
  expect(allowLentFrames()).toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'larder-write-'));
  const store = await DiskStore.open({ path: join(dir, 'store'), maxBytes: 1 << 30 });
  const uploads = await PartialUploads.open({
    parentDir: join(dir, 'store', 'uploads'),
    maxBytes: 1 << 30,
    maxUploads: 4,
    idleMs: 60_000,
    minBlobBytes: 1,
  });
  const data = randomBytes(MESSAGE * MESSAGES, 61);
  const { hash } = digestOf(data);
  const name = `uploads/3f1c2a4e-0000-4000-8000-000000000061/blobs/${hash}/${data.byteLength}`;

  // The requests as grpc-js's server decodes them: each message's frame fed to the call's decoder in 16 KiB DATA
  // frames, only when the handler asks for it (as adapt.ts reads at most one ahead).
  const decoder = new StreamDecoder(-1);
  const memories = new Set<ArrayBufferLike>();
  async function* requests(): AsyncGenerator<WriteRequest> {
    for (let i = 0; i < MESSAGES; i++) {
      const message = toBinary(
        WriteRequestSchema,
        create(WriteRequestSchema, {
          resourceName: i === 0 ? name : '',
          writeOffset: BigInt(i * MESSAGE),
          data: data.subarray(i * MESSAGE, (i + 1) * MESSAGE),
          finishWrite: i === MESSAGES - 1,
        }),
      );
      const frame = Buffer.alloc(5 + message.byteLength);
      frame.writeUInt32BE(message.byteLength, 1);
      frame.set(message, 5);
      const decoded: Buffer[] = [];
      for (let at = 0; at < frame.byteLength; at += 16 * 1024)
        decoded.push(...decoder.write(frame.subarray(at, at + 16 * 1024)));
      expect(decoded).toHaveLength(1);
      memories.add(decoded[0]!.buffer);
      yield fromBinary(WriteRequestSchema, decoded[0]!.subarray(5));
    }
  }

  try {
    const deps = { store, log: createLogger('silent'), uploads, zstd: null, maxBlobBytes: 1 << 30 };
    const committed = await writeBlob(deps, requests(), new AbortController().signal);
    expect(committed).toBe(BigInt(data.byteLength));
    // One message being decoded, one decoded ahead, one being written: not one buffer per message.
    expect(memories.size).toBeLessThanOrEqual(3);
    const stored = await store.get(blobKey('', 'cas', hash));
    const parts: Uint8Array[] = [];
    for await (const part of stored!.body) parts.push(part);
    expect(sha256(Buffer.concat(parts))).toBe(hash);
  } finally {
    await uploads.close();
    await store.close?.();
  }
});
