// A client-streaming handler that is busy with one message (ByteStream Write writing and hashing a MiB) has at
// most one more decoded ahead of it, not Node's default of 16 (executor/grpc/adapt.ts READ_AHEAD): those decoded
// messages are what a large Write holds in memory per upload.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { addService } from '../../../executor/grpc/adapt.ts';
import { createClient } from '../../../executor/grpc/client.ts';
import { ByteStream, type WriteRequest } from '../../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { createLogger } from '../../../shared/log.ts';

const MESSAGES = 20;
const CHUNK = 64 * 1024;

let server: grpc.Server;
let address: string;
let decoded = 0;
/** The most messages decoded but not yet taken by the handler, seen while it was busy with the first. */
let mostAhead = 0;

beforeAll(async () => {
  server = new grpc.Server();
  addService(
    server,
    ByteStream,
    {
      async read() {
        throw new Error('not used');
      },
      async queryWriteStatus() {
        throw new Error('not used');
      },
      async write(requests: AsyncIterable<WriteRequest>) {
        let taken = 0;
        let bytes = 0;
        for await (const request of requests) {
          taken++;
          bytes += request.data.byteLength;
          if (taken === 1) {
            // Busy with the first message while the rest arrive: let the event loop run (bounded) until everything
            // was decoded or it has had ample turns to read ahead.
            for (let turn = 0; turn < 2000 && decoded < MESSAGES; turn++) {
              await new Promise((resolve) => setImmediate(resolve));
              mostAhead = Math.max(mostAhead, decoded - taken);
            }
          }
        }
        return { committedSize: BigInt(bytes) };
      },
    },
    {
      log: createLogger('silent'),
      observe: { bytes: (direction) => void (direction === 'in' && decoded++), finished: () => {} },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => server.forceShutdown());

it('decodes at most one message ahead of a busy client-streaming handler', async () => {
  const client = createClient(ByteStream, address);
  try {
    function* writes() {
      for (let i = 0; i < MESSAGES; i++)
        yield { resourceName: '', writeOffset: BigInt(i * CHUNK), data: new Uint8Array(CHUNK), finishWrite: false };
    }
    const reply = await client.write(writes());
    expect(reply.committedSize).toBe(BigInt(MESSAGES * CHUNK));
    expect(decoded).toBe(MESSAGES);
    expect(mostAhead).toBeLessThanOrEqual(1);
  } finally {
    client.close();
  }
});
