/**
 * What `/metrics` reads, pinned: a fixed sequence of everything Metrics records (requests, bytes, store latencies
 * and usage, evictions, refusals, S3 retries and failures, gRPC calls), with a scrape midway, gives exactly the
 * text in metrics-exposition.txt. That file is what Metrics wrote for this sequence when every series was one of
 * prom-client's own instruments, before the hot ones were tallied by hand (shared/metrics/tallied-histogram.ts and
 * Tally): the tallies change what a recording costs, never a byte of the exposition.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Metrics, type Outcome, type StoreResult } from '../../shared/metrics/metrics.ts';

async function exposition(): Promise<string> {
  const metrics = new Metrics();
  const memory = { store: 'memory', tier: '0' } as const;
  const disk = { store: 'disk', tier: '1' } as const;
  metrics.watchStore(memory, { bytes: () => 4096, budget: 2 ** 20 });
  metrics.watchStore(disk, { bytes: () => 123456, budget: 2 ** 30 });
  const [inMemory, onDisk] = [metrics.storeObserver(memory), metrics.storeObserver(disk)];
  const seconds = [0.0004, 0.0005, 0.0007, 0.003, 0.02, 0.3, 31, 0.00001, 1, 2.5];
  const operations = ['put', 'get', 'stat'] as const;
  const results: StoreResult[] = ['ok', 'hit', 'miss', 'error'];
  const outcomes: Outcome[] = ['hit', 'miss', 'stored', 'refused', 'error'];
  const reasons = ['unauthenticated', 'permission_denied', 'unavailable'] as const;
  for (let i = 0; i < 40; i++) {
    const protocol = i % 2 ? 'http' : 'grpc';
    (i % 3 === 0 ? onDisk : inMemory)(operations[i % 3]!, results[(i >> 1) % 4]!, seconds[i % 10]! * (1 + i / 1000));
    metrics.request(
      protocol,
      ['GET', 'PUT', 'BatchReadBlobs'][i % 3]!,
      i % 5 ? 'cas' : 'ac',
      outcomes[i % 5]!,
      1 + (i % 4),
    );
    metrics.bytes(protocol, i % 3 ? 'out' : 'in', 1000 * i);
    if (i % 7 === 0) metrics.evicted(i % 2 ? memory : disk, 1 + i);
    if (i % 5 === 0)
      metrics.grpcCall(['FindMissingBlobs', 'Execute'][i % 2]!, ['OK', 'NOT_FOUND', 'UNAUTHENTICATED'][i % 3]!);
    if (i % 13 === 0) metrics.authRefused(protocol, reasons[i % 3]!);
    if (i % 11 === 0) {
      metrics.s3Attempts('GetObject', 1 + (i % 3));
      metrics.s3Failed('PutObject', 'timeout');
    }
    if (i === 20) await metrics.exposition(); // what is tallied so far is added then, the rest at the next scrape
  }
  return metrics.exposition();
}

describe('the /metrics exposition', () => {
  it('reads byte for byte as it did with prom-client’s instruments throughout', async () => {
    const expected = readFileSync(new URL('./metrics-exposition.txt', import.meta.url), 'utf8');
    expect(await exposition()).toBe(expected);
  });
});
