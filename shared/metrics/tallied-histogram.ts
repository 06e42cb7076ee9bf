/**
 * Use this instead of prom-client's Histogram for a series observed once per blob or per request. Hand-written because
 * of what prom-client's `observe` costs: it validates and hashes the labels object and turns the bucket bound into a
 * property name on every call: 1.2–2.7 µs per observation, even through a child looked up once, against 30–100 ns here
 * (Node, Bun and Deno; `bench/metrics-observe.ts`), paid 1,000 times by a BatchReadBlobs of 1,000 blobs. Here each
 * label set is resolved once to a `HistogramSeries` (bucket counts in an array, a sum and a count) and an observation
 * is a bucket search and three additions.
 *
 * The registry reads it at scrape time through `get()`, which answers the same records prom-client's Histogram does
 * (cumulative `_bucket` lines with `le` first, `+Inf`, `_sum`, `_count`, series in the order first observed), so
 * `/metrics` reads exactly as it would with prom-client's (test/shared/tallied-histogram.test.ts compares the text, and
 * test/shared/metrics-exposition.test.ts the whole exposition).
 */
import type { Histogram, Registry } from 'prom-client';

export interface TalliedHistogramOptions {
  name: string;
  help: string;
  /** Upper bounds, ascending; `+Inf` is implied. */
  buckets: readonly number[];
  registers: Registry[];
}

export class TalliedHistogram<Label extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly #buckets: readonly number[];
  /** Series with at least one observation, in the order of their first: prom-client lists them so. */
  readonly #listed: HistogramSeries[] = [];
  /** Every series handed out, by label set. */
  readonly #resolved = new Map<string, HistogramSeries>();

  constructor(options: TalliedHistogramOptions) {
    this.name = options.name;
    this.help = options.help;
    this.#buckets = options.buckets;
    // The registry takes any object with a name, help, type and get() (prom-client's own metrics are such objects);
    // its TypeScript signature names only prom-client's classes.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Histogram<Label>);
  }

  /** The series for one label set, to keep and observe into; it shows in the exposition once observed. */
  series(labels: Record<Label, string>): HistogramSeries {
    // Asked again for the same labels (two store graphs on one registry, say), the same series, as prom-client would.
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
    let series = this.#resolved.get(key);
    if (series === undefined) {
      series = new HistogramSeries(labels, this.#buckets, this.#listed);
      this.#resolved.set(key, series);
    }
    return series;
  }

  async get(): Promise<HistogramReading> {
    const bucketName = `${this.name}_bucket`;
    const values: HistogramReading['values'] = [];
    for (const series of this.#listed) {
      let cumulative = 0;
      for (let i = 0; i < this.#buckets.length; i++) {
        cumulative += series.counts[i]!;
        values.push({ metricName: bucketName, labels: { le: this.#buckets[i]!, ...series.labels }, value: cumulative });
      }
      values.push({ metricName: bucketName, labels: { le: '+Inf', ...series.labels }, value: series.count });
      values.push({ metricName: `${this.name}_sum`, labels: { ...series.labels }, value: series.sum });
      values.push({ metricName: `${this.name}_count`, labels: { ...series.labels }, value: series.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** What `registry.resetMetrics()` calls: every series back to none, as prom-client's reset does. */
  reset(): void {
    for (const series of this.#listed) series.clear();
    this.#listed.length = 0;
  }
}

/** What prom-client's Histogram#get() answers, and its registry formats. */
export interface HistogramReading {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }>;
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly buckets: readonly number[],
    private readonly listed: HistogramSeries[],
  ) {
    this.counts = new Array<number>(buckets.length + 1).fill(0);
  }

  /** A value that is not a finite number is dropped (prom-client throws; a timing never is one). */
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    if (this.count === 0) this.listed.push(this);
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}
