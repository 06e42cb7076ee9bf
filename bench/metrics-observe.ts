/**
 * What recording one store operation costs: `npx tsx bench/metrics-observe.ts` (or under `bun`/`deno run -A`).
 * Every store get, stat and put of every request is observed once (FindMissingBlobs' stats, BatchReadBlobs' gets),
 * so this is paid per blob. Compares prom-client's histogram (labels object, or a child looked up once) with
 * shared/metrics/tallied-histogram.ts and the store observer Metrics builds on it, and prints ns per observation
 * (best of 5 rounds; a busy machine only slows rounds down).
 */
import { Histogram, Registry } from 'prom-client';
import { Metrics } from '../shared/metrics/metrics.ts';
import { TalliedHistogram } from '../shared/metrics/tallied-histogram.ts';

const N = 1_000_000;
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// Varied, realistic latencies (tens of µs to a few ms) so the bucket search is not always the first bucket.
const values = Array.from({ length: 1024 }, (_, i) => ((i * 7919) % 1024) / 200_000);

function best(name: string, observe: (i: number) => void): void {
  let ns = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const start = performance.now();
    for (let i = 0; i < N; i++) observe(i);
    ns = Math.min(ns, ((performance.now() - start) * 1e6) / N);
  }
  console.log(`${name.padEnd(52)} ${ns.toFixed(1).padStart(7)} ns/observation`);
}

const histogram = new Histogram({
  name: 'h',
  help: 'h',
  labelNames: ['store', 'tier', 'operation', 'result'] as const,
  buckets: BUCKETS,
  registers: [new Registry()],
});
best('prom-client observe(labels, v)', (i) =>
  histogram.observe({ store: 'disk', tier: '0', operation: 'get', result: 'hit' }, values[i & 1023]!),
);
const child = histogram.labels({ store: 'disk', tier: '0', operation: 'get', result: 'hit' });
best('prom-client child.observe(v)', (i) => child.observe(values[i & 1023]!));

const series = new TalliedHistogram({ name: 't', help: 't', buckets: BUCKETS, registers: [new Registry()] }).series({
  store: 'disk',
  tier: '0',
  operation: 'get',
  result: 'hit',
});
best('TalliedHistogram series.observe(v)', (i) => series.observe(values[i & 1023]!));
const observe = new Metrics().storeObserver({ store: 'disk', tier: '0' });
best('Metrics.storeObserver(labels)(op, result, v)', (i) => observe(i & 1 ? 'get' : 'stat', 'hit', values[i & 1023]!));
best('performance.now() twice (the timing itself)', () => performance.now() - performance.now());
