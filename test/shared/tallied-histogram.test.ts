/**
 * shared/metrics/tallied-histogram.ts against prom-client's own Histogram: the same observations, in the same order,
 * give the same exposition text byte for byte and the same JSON, with several label sets first observed out of the
 * order they were resolved in, values on a bucket's bound and above every bound, metrics registered around it, and
 * after a reset.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { TalliedHistogram } from '../../shared/metrics/tallied-histogram.ts';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
type Label = 'store' | 'tier' | 'operation' | 'result';
const LABEL_SETS: Array<Record<Label, string>> = [
  { store: 'memory', tier: '0', operation: 'get', result: 'hit' },
  { store: 'disk', tier: '1', operation: 'put', result: 'ok' },
  { store: 's3', tier: '1', operation: 'stat', result: 'miss' },
  { store: 'disk', tier: '0', operation: 'get', result: 'error' },
];

/** One registry holding a counter, the histogram under test and another counter, as Metrics' registry does. */
function registryWith(histogram: 'prom-client' | 'tallied') {
  const registry = new Registry();
  const around = (name: string) => new Counter({ name, help: `${name} "help"`, registers: [registry] }).inc(3);
  around('before_total');
  const options = {
    name: 'larder_store_operation_seconds',
    help: 'Store operation latency by store, tier, operation and result (get: until the blob is open, not read)',
    buckets: BUCKETS,
    registers: [registry],
  };
  let observe: (labels: Record<Label, string>, value: number) => void;
  let reset: () => void;
  if (histogram === 'prom-client') {
    const h = new Histogram({ ...options, labelNames: ['store', 'tier', 'operation', 'result'] as const });
    observe = (labels, value) => h.observe(labels, value);
    reset = () => h.reset();
  } else {
    const h = new TalliedHistogram<Label>(options);
    // Resolved up front, in reverse: a series shows from its first observation, not from being resolved.
    const series = new Map([...LABEL_SETS].reverse().map((labels) => [labels, h.series(labels)] as const));
    // The same labels resolved again (in another key order) are the same series: half the observations go through it.
    const again = h.series({ result: 'ok', operation: 'put', tier: '1', store: 'disk' });
    observe = (labels, value) =>
      (labels === LABEL_SETS[1] && value > 0.01 ? again : series.get(labels)!).observe(value);
    reset = () => h.reset();
  }
  around('after_total');
  return { registry, observe, reset };
}

/** A fixed, varied sequence: sub-millisecond to above the last bound, exact bounds included, label sets interleaved. */
function observations(): Array<[Record<Label, string>, number]> {
  const values = [0.0005, 0.0001234, 0.0031, 30, 31.5, 0.1, 0.07, 2.5, 0.000002, 12.25, 0.33333, 1];
  const sequence: Array<[Record<Label, string>, number]> = [];
  for (let i = 0; i < 200; i++) {
    const labels = LABEL_SETS[(i * 7 + (i >> 3)) % 3]!; // the fourth label set is never observed
    sequence.push([labels, values[(i * 5) % values.length]! * (1 + (i % 11) / 97)]);
  }
  return sequence;
}

describe('TalliedHistogram', () => {
  it('exposes exactly what prom-client’s Histogram exposes for the same observations', async () => {
    const reference = registryWith('prom-client');
    const tallied = registryWith('tallied');
    expect(await tallied.registry.metrics()).toBe(await reference.registry.metrics()); // nothing observed yet
    for (const [labels, value] of observations()) {
      reference.observe(labels, value);
      tallied.observe(labels, value);
    }
    const text = await tallied.registry.metrics();
    expect(text).toContain('larder_store_operation_seconds_bucket{le="0.0005",store="disk",tier="1"');
    expect(text).toBe(await reference.registry.metrics());
    // The same records too (prom-client adds an empty exemplar field to each, none being enabled).
    const withoutExemplars = (json: Awaited<ReturnType<Registry['getMetricsAsJSON']>>) =>
      json.map((m) => ({
        ...m,
        values: m.values.map((v) => {
          const { exemplar: _, ...rest } = v as typeof v & { exemplar?: unknown };
          return rest;
        }),
      }));
    expect(withoutExemplars(await tallied.registry.getMetricsAsJSON())).toEqual(
      withoutExemplars(await reference.registry.getMetricsAsJSON()),
    );
  });

  it('starts over after a reset, as prom-client’s does', async () => {
    const reference = registryWith('prom-client');
    const tallied = registryWith('tallied');
    for (const [labels, value] of observations().slice(0, 50)) {
      reference.observe(labels, value);
      tallied.observe(labels, value);
    }
    reference.reset();
    tallied.reset();
    for (const [labels, value] of observations().slice(50, 60).reverse()) {
      reference.observe(labels, value);
      tallied.observe(labels, value);
    }
    expect(await tallied.registry.metrics()).toBe(await reference.registry.metrics());
  });
});
