// The CAS a `larder worker` uses, over gRPC against a real executor's REAPI CAS: batched uploads (many outputs
// to one BatchUpdateBlobs call), refusals carried back, and reads that stop when their action stops waiting.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectOutputs } from '../../../executor/worker/collect-outputs.ts';
import { type Frontend, openFrontend } from '../../../executor/worker/frontend.ts';
import { grpcCas } from '../../../executor/worker/grpc-cas.ts';
import { digestOf, randomBytes, startTestServer, type TestServer } from '../helpers.ts';
import { tempDirs } from './helpers.ts';

const freshDir = tempDirs();
const checked = (data: Uint8Array | string) => {
  const { hash, sizeBytes } = digestOf(data);
  return { hash, sizeBytes: Number(sizeBytes) };
};

describe('grpcCas', () => {
  let server: TestServer;
  let frontend: Frontend;

  beforeAll(async () => {
    server = await startTestServer({ args: ['--workers', '0'] });
    frontend = openFrontend({ url: `grpc://${server.address}`, caPath: '', credentialsPath: '' });
  });
  afterAll(async () => {
    frontend?.close();
    await server?.stop();
  });

  it('uploads a batch of blobs in one call and reports a blob the frontend refuses', async () => {
    const cas = grpcCas(frontend, '');
    const blobs = Array.from({ length: 500 }, (_, i) => Buffer.from(`batched blob ${i} ${randomUUID()}`));
    const digests = blobs.map(checked);
    expect(await cas.findMissing(digests)).toHaveLength(500);
    await cas.uploadBatch(blobs.map((bytes, i) => ({ digest: digests[i]!, bytes })));
    expect(await cas.findMissing(digests)).toEqual([]);

    const lie = { digest: checked('what the worker hashed'), bytes: Buffer.from('what it sent instead!!') };
    await expect(cas.uploadBatch([{ digest: checked('fine'), bytes: Buffer.from('fine') }, lie])).rejects.toThrow(
      /BatchUpdateBlobs/,
    );
  });

  it('stops a ByteStream read when its signal aborts and leaves no file behind', async () => {
    const cas = grpcCas(frontend, '');
    const data = randomBytes(32 * 1024 * 1024, 7);
    const digest = checked(data);
    await cas.uploadBytes(digest, data);
    const path = join(freshDir(), 'fetched');
    const controller = new AbortController();
    const reading = cas.readToFile(digest, path, controller.signal);
    // Wait for the first chunk on disk, then give up on the rest.
    const started = Date.now();
    while (!(existsSync(path) && statSync(path).size > 0) && Date.now() - started < 20_000)
      await new Promise((resolve) => setImmediate(resolve));
    controller.abort(new Error('nobody waits any more'));
    await expect(reading).rejects.toThrow('nobody waits any more');
    expect(existsSync(path), path).toBe(false);
  });

  it('collects and uploads 10,000 small outputs through the frontend in batches', async () => {
    const execRoot = join(freshDir(), 'root');
    for (let d = 0; d < 100; d++) {
      mkdirSync(join(execRoot, 'out', `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++)
        writeFileSync(join(execRoot, 'out', `d${d}`, `f${d * 1000 + f}`), `grpc ${d}.${f}\n`);
    }
    const cas = grpcCas(frontend, '');
    const started = performance.now();
    const result = await collectOutputs({
      cas,
      execRoot,
      workingDirectory: '',
      outputPaths: [],
      outputFiles: [],
      outputDirectories: ['out'],
    });
    const elapsedMs = performance.now() - started;
    console.log(`10,000 outputs through the gRPC CAS: ${elapsedMs.toFixed(0)} ms`);
    expect(result.outputDirectories).toHaveLength(1);
    const sample = [checked('grpc 0.0\n'), checked('grpc 42.23\n'), checked('grpc 99.99\n')];
    expect(await cas.findMissing(sample)).toEqual([]);
  }, 300_000);
});
