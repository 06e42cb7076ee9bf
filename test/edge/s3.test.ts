// The HTTP protocol suite against edges whose store is S3 (s3rver on loopback), alone and behind a memory
// tier, on Node and on Deno.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe } from 'vitest';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { describeHttpProtocol } from './http-protocol.ts';

let server: S3Server;
beforeAll(async () => {
  server = await startS3Server();
});
afterAll(() => server?.destroy());

const runtimes = edgeRuntimes();

for (const runtime of runtimes) {
  describe(`on ${runtime}`, () => {
    // Plain S3 streams both ways (multipart up, body straight out), so the 256 MiB flat-memory check runs, with
    // the same bound on every runtime. Bun's collector is slow to free large buffers: with a fresh 8 MiB buffer per
    // part its RSS grew by 120-152 MiB; with part buffers reused (s3-upload.ts) by 92-99.
    describeHttpProtocol(`HTTP protocol on ${runtime}, s3 store`, {
      runtime,
      store: async () => ({
        args: ['--store', `s3://${S3_BUCKET}/${runtime}-${randomUUID()}`],
        env: server.env(),
        cleanup: () => {},
      }),
    });
    // A memory front tier holds every blob it serves in memory by design.
    describeHttpProtocol(`HTTP protocol on ${runtime}, tiered(memory, s3) store`, {
      runtime,
      store: async () => ({
        args: ['--store', `tiered(memory:1GiB,s3://${S3_BUCKET}/${runtime}-${randomUUID()})`],
        env: server.env(),
        cleanup: () => {},
      }),
      streamsToStorage: false,
    });
  });
}

// The fleet-node shape: a disk tier streams too, so the flat-memory check applies to the pair.
describeHttpProtocol('HTTP protocol on node, tiered(disk, s3) store', {
  runtime: 'node',
  store: async () => {
    const dir = tempDir();
    return {
      args: ['--store', `tiered(disk:${dir.path}@2GiB,s3://${S3_BUCKET}/disk-${randomUUID()})`],
      env: server.env(),
      cleanup: dir.remove,
    };
  },
});
