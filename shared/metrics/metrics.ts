/**
 * Everything larder counts, in one Prometheus registry per server (prom-client). Runtime-neutral: prom-client's
 * registry, counters and histograms run unchanged on Node, Deno and Bun (no permissions needed), and `/metrics`
 * serves `registry.metrics()`; the exposition format is prom-client's, never written here. What is recorded per
 * blob or request is kept as plain numbers until a scrape reads it (Tally, TalliedHistogram): prom-client's own
 * recording checks and hashes a labels object every time.
 *
 * Labels are bounded by construction: protocol, method and kind are closed sets, stores are named by kind and
 * tier position, reasons are error codes. No hash, instance name, path or user name ever becomes a label value.
 *
 * Callers record through the small methods below rather than touching instruments, so the label sets stay in
 * one file. The totals() view feeds the status page's chart (shared/metrics/history.ts).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { TalliedHistogram } from './tallied-histogram.ts';

export type Protocol = 'http' | 'grpc';
export type BlobKind = 'ac' | 'cas';
/**
 * What became of one cache request: a read answered (`hit`) or not (`miss`), a write `stored`, a request turned
 * away for the client's fault (`refused`: credentials, role, wrong hash, too large, malformed), or a server-side
 * `error` (store down, timeout, disk full).
 */
export type Outcome = 'hit' | 'miss' | 'stored' | 'refused' | 'error';
const STORE_OPERATIONS = ['get', 'stat', 'put'] as const;
const STORE_RESULTS = ['hit', 'miss', 'ok', 'error'] as const;
export type StoreOperation = (typeof STORE_OPERATIONS)[number];
export type StoreResult = (typeof STORE_RESULTS)[number];
/** Each operation's and result's place in the lists above: where storeObserver finds a series. */
const STORE_OPERATION_INDEX = indexOf(STORE_OPERATIONS);
const STORE_RESULT_INDEX = indexOf(STORE_RESULTS);
/** Where a store sits: its kind and its position in `tiered(…)` (0 = the front, or the only store). */
export interface StoreLabels {
  store: 'memory' | 'disk' | 's3';
  tier: string;
}

/** Seconds: store operations span sub-millisecond memory hits to S3 round trips with retries. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Metrics {
  readonly registry = new Registry();

  // Counted per request or call: tallied as plain numbers and added to the counters when they are read (see Tally).
  readonly #requestTally = new Tally<'protocol' | 'method' | 'kind' | 'outcome'>();
  readonly #bytesTally = new Tally<'protocol' | 'direction'>();
  readonly #requests: Counter<'protocol' | 'method' | 'kind' | 'outcome'> = new Counter({
    name: 'larder_requests_total',
    help: 'Cache requests by protocol, method, kind (ac/cas) and outcome (hit, miss, stored, refused, error)',
    labelNames: ['protocol', 'method', 'kind', 'outcome'] as const,
    registers: [this.registry],
    collect: (): void => this.#requestTally.addTo(this.#requests),
  });
  readonly #bytes: Counter<'protocol' | 'direction'> = new Counter({
    name: 'larder_bytes_total',
    help: 'Bytes received (in: uploads) and sent (out: downloads), by protocol; gRPC counts whole messages',
    labelNames: ['protocol', 'direction'] as const,
    registers: [this.registry],
    collect: (): void => this.#bytesTally.addTo(this.#bytes),
  });
  // Observed once per blob (a BatchReadBlobs of 1,000 is 1,000 gets): a TalliedHistogram, not prom-client's.
  readonly #storeSeconds = new TalliedHistogram<'store' | 'tier' | 'operation' | 'result'>({
    name: 'larder_store_operation_seconds',
    help: 'Store operation latency by store, tier, operation and result (get: until the blob is open, not read)',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #storeBytes = new Gauge({
    name: 'larder_store_bytes',
    help: 'Bytes held by a memory or disk store (a shared disk folder: what this process knows of)',
    labelNames: ['store', 'tier'] as const,
    registers: [this.registry],
  });
  readonly #storeBudget = new Gauge({
    name: 'larder_store_budget_bytes',
    help: 'Size budget of a memory or disk store',
    labelNames: ['store', 'tier'] as const,
    registers: [this.registry],
  });
  // A full memory tier evicts on nearly every insertion: tallied too.
  readonly #evictionTally = new Tally<'store' | 'tier'>();
  readonly #evictions: Counter<'store' | 'tier'> = new Counter({
    name: 'larder_store_evictions_total',
    help: 'Blobs evicted from a memory or disk store to stay within its budget (or to make room on a full disk)',
    labelNames: ['store', 'tier'] as const,
    registers: [this.registry],
    collect: (): void => this.#evictionTally.addTo(this.#evictions),
  });
  readonly #authRefusals = new Counter({
    name: 'larder_auth_refusals_total',
    help: 'Requests and calls refused by authentication or authorisation, by protocol and reason',
    labelNames: ['protocol', 'reason'] as const,
    registers: [this.registry],
  });
  readonly #s3Retries = new Counter({
    name: 'larder_s3_retries_total',
    help: 'S3 requests retried by the SDK (attempts beyond the first), by S3 operation',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly #s3Failures = new Counter({
    name: 'larder_s3_failures_total',
    help: 'S3 requests that failed after their retries, by S3 operation and reason (unavailable, timeout, …)',
    labelNames: ['operation', 'reason'] as const,
    registers: [this.registry],
  });
  readonly #grpcCallTally = new Tally<'method' | 'code'>();
  readonly #grpcCalls: Counter<'method' | 'code'> = new Counter({
    name: 'larder_grpc_calls_total',
    help: 'gRPC calls by method and status code',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
    collect: (): void => this.#grpcCallTally.addTo(this.#grpcCalls),
  });
  /** Running sums for the status page, kept beside the labelled counters so reading them is synchronous. */
  readonly #totals = { requests: 0, hits: 0, misses: 0, bytesIn: 0, bytesOut: 0 };

  request(protocol: Protocol, method: string, kind: BlobKind, outcome: Outcome, count = 1): void {
    this.#requestTally.add(`${protocol} ${method} ${kind} ${outcome}`, count, () => ({
      protocol,
      method,
      kind,
      outcome,
    }));
    this.#totals.requests += count;
    if (outcome === 'hit') this.#totals.hits += count;
    if (outcome === 'miss') this.#totals.misses += count;
  }

  bytes(protocol: Protocol, direction: 'in' | 'out', bytes: number): void {
    if (bytes <= 0) return;
    this.#bytesTally.add(`${protocol} ${direction}`, bytes, () => ({ protocol, direction }));
    if (direction === 'in') this.#totals.bytesIn += bytes;
    else this.#totals.bytesOut += bytes;
  }

  /**
   * How one store of the graph records its operations' latencies (seconds). Its series (every operation and result)
   * are resolved here, once, so recording one is an array index and no label lookup.
   */
  storeObserver(labels: StoreLabels): (operation: StoreOperation, result: StoreResult, seconds: number) => void {
    const series = STORE_OPERATIONS.flatMap((operation) =>
      STORE_RESULTS.map((result) => this.#storeSeconds.series({ ...labels, operation, result })),
    );
    return (operation, result, seconds) =>
      series[STORE_OPERATION_INDEX[operation] * STORE_RESULTS.length + STORE_RESULT_INDEX[result]]!.observe(seconds);
  }

  /** Reports a bounded store's usage at every scrape; `bytes` is read then, so it is always current. */
  watchStore(labels: StoreLabels, usage: { bytes: () => number; budget: number }): void {
    this.#watched.push({ labels, ...usage });
    this.#storeBudget.set(labels, usage.budget);
    this.#storeBytes.set(labels, usage.bytes());
    this.#evictions.inc(labels, 0);
  }

  readonly #watched: Array<{ labels: StoreLabels; bytes: () => number; budget: number }> = [];

  evicted(labels: StoreLabels, blobs: number): void {
    this.#evictionTally.add(`${labels.store} ${labels.tier}`, blobs, () => ({
      store: labels.store,
      tier: labels.tier,
    }));
  }

  authRefused(protocol: Protocol, reason: 'unauthenticated' | 'permission_denied' | 'unavailable'): void {
    this.#authRefusals.inc({ protocol, reason });
  }

  s3Attempts(operation: string, attempts: number): void {
    if (attempts > 1) this.#s3Retries.inc({ operation }, attempts - 1);
  }

  s3Failed(operation: string, reason: string): void {
    this.#s3Failures.inc({ operation, reason });
  }

  grpcCall(method: string, code: string): void {
    this.#grpcCallTally.add(`${method} ${code}`, 1, () => ({ method, code }));
  }

  /** The running totals and each bounded store's usage, for the status page. */
  totals(): Totals {
    for (const store of this.#watched) this.#storeBytes.set(store.labels, store.bytes());
    return {
      ...this.#totals,
      stores: this.#watched.map((s) => ({ ...s.labels, bytes: s.bytes(), budget: s.budget })),
    };
  }

  /** The Prometheus text exposition, as prom-client writes it. */
  async exposition(): Promise<string> {
    this.totals(); // refresh the store gauges
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export interface Totals {
  requests: number;
  hits: number;
  misses: number;
  bytesIn: number;
  bytesOut: number;
  stores: Array<StoreLabels & { bytes: number; budget: number }>;
}

function indexOf<T extends string>(list: readonly T[]): Record<T, number> {
  return Object.fromEntries(list.map((item, i) => [item, i])) as Record<T, number>;
}

/**
 * Counts by label set, kept as plain numbers until the counter is read (its `collect`, at every scrape): prom-client
 * checks and hashes the labels object on every `inc`, a cost paid per request otherwise. Label sets are keyed by
 * their values joined (none contains the separator: each is a closed set, an HTTP method token or a gRPC method name).
 */
class Tally<Label extends string> {
  readonly #counts = new Map<string, { labels: Record<Label, string>; pending: number }>();

  add(id: string, count: number, labels: () => Record<Label, string>): void {
    const entry = this.#counts.get(id);
    if (entry === undefined) this.#counts.set(id, { labels: labels(), pending: count });
    else entry.pending += count;
  }

  addTo(counter: Counter<Label>): void {
    for (const entry of this.#counts.values()) {
      if (entry.pending === 0) continue;
      counter.inc(entry.labels, entry.pending);
      entry.pending = 0;
    }
  }
}
