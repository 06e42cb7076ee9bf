// Two real `larder executor` processes on one disk folder: FindMissingBlobs may only call a blob present while it is
// there. A blob the other process evicts is missing at once, whether the eviction happened while both ran (told
// through the ledger) or in a process that started, evicted and stopped while this one was idle (its ledger removed
// by a newcomer before this one could read it).
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/edge-process.ts';
import {
  type Clients,
  clientsFor,
  digestOf,
  type ExecutorProcess,
  randomBytes,
  startExecutorProcess,
} from './helpers.ts';

describe('FindMissingBlobs with two executors on one disk folder', () => {
  const dir = tempDir('larder-shared-cas-');
  const store = join(dir.path, 'store');
  let big: ExecutorProcess;
  let bigClients: Clients;
  const started: ExecutorProcess[] = [];
  const start = async (maxSize: string) => {
    const executor = await startExecutorProcess(['--store', `disk:${store}`, '--max-size', maxSize]);
    started.push(executor);
    return executor;
  };
  const clientsOf = (executor: ExecutorProcess) => clientsFor(new URL(executor.url).host);
  const missing = async (clients: Clients, digests: Array<ReturnType<typeof digestOf>>) =>
    (await clients.cas.findMissingBlobs({ blobDigests: digests })).missingBlobDigests.map((d) => d.hash);

  beforeAll(async () => {
    big = await start('64MiB');
    bigClients = clientsOf(big);
  });
  afterEach(async () => {
    for (const executor of started.splice(1)) await executor.stop();
  });
  afterAll(async () => {
    bigClients?.close();
    for (const executor of started) await executor.stop();
    dir.remove();
  });

  it('reports a blob the other process evicted as missing at once', async () => {
    const small = await start('64KiB');
    const smallClients = clientsOf(small);
    try {
      const blob = randomBytes(1024, 11);
      await bigClients.cas.batchUpdateBlobs({ requests: [{ digest: digestOf(blob), data: blob }] });
      expect(await missing(bigClients, [digestOf(blob)])).toEqual([]);

      // 64 KiB more through the small one: the folder's total is over its budget, so it evicts the oldest blob.
      const filler = randomBytes(64 * 1024, 12);
      const stored = await smallClients.cas.batchUpdateBlobs({
        requests: [{ digest: digestOf(filler), data: filler }],
      });
      expect(stored.responses[0]!.status?.code).toBe(grpc.status.OK);

      expect(await missing(bigClients, [digestOf(blob), digestOf(filler)])).toEqual([digestOf(blob).hash]);
      const read = await bigClients.cas.batchReadBlobs({ digests: [digestOf(blob)] });
      expect(read.responses[0]!.status?.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      smallClients.close();
    }
  });

  it('reports a blob as missing that a process evicted and stopped while this one was idle', async () => {
    const blob = randomBytes(4096, 13);
    await bigClients.cas.batchUpdateBlobs({ requests: [{ digest: digestOf(blob), data: blob }] });
    expect(await missing(bigClients, [digestOf(blob)])).toEqual([]);

    // A process whose budget the folder already exceeds evicts at start-up, down to what fits, and stops; the next
    // process to start removes the ledger it left, so the big one never reads of that eviction.
    const tiny = await start('1KiB');
    await tiny.stop();
    await start('64MiB');
    console.log(
      'LEDGERS',
      require('node:fs').readdirSync(join(store, 'ledger')),
      require('node:fs').readdirSync(join(store, 'blobs/_/cas')),
    );

    expect(await missing(bigClients, [digestOf(blob)])).toEqual([digestOf(blob).hash]);
  });
});
