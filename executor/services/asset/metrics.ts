/**
 * FetchBlob's figures on the server's registry: the downloads in progress, and how each call was answered:
 * `cache` (no origin contacted), `origin` (downloaded now), `joined` (waited for the same download another call
 * had in flight) or `failed` (refused, not downloadable, deadline). The share of `cache` says how much upstream
 * traffic the cache saves.
 */
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../../../shared/metrics/metrics.ts';

export type FetchOutcome = 'cache' | 'origin' | 'joined' | 'failed';

export interface FetchMetrics {
  answered(outcome: FetchOutcome): void;
}

/** What is being downloaded now: downloads in flight (each once) and the FetchBlob calls waiting for them. */
export interface DownloadsInFlight {
  readonly size: number;
  readonly waiters: number;
}

export function fetchMetrics(metrics: Metrics | undefined, inFlight: DownloadsInFlight): FetchMetrics {
  if (metrics === undefined) return { answered() {} };
  new Gauge({
    name: 'larder_asset_downloads_in_flight',
    help: 'Remote Asset downloads from origins in progress (identical fetches share one)',
    registers: [metrics.registry],
    collect() {
      this.set(inFlight.size);
    },
  });
  new Gauge({
    name: 'larder_asset_download_waiters',
    help: 'FetchBlob calls waiting for a download in progress',
    registers: [metrics.registry],
    collect() {
      this.set(inFlight.waiters);
    },
  });
  const calls = new Counter({
    name: 'larder_asset_fetches_total',
    help: 'Remote Asset FetchBlob calls by how they were answered (cache, origin, joined, failed)',
    labelNames: ['outcome'] as const,
    registers: [metrics.registry],
  });
  return { answered: (outcome) => calls.inc({ outcome }) };
}
