/**
 * A worker host's figures on a registry, read at each scrape: its workers' running actions and slots, the input
 * cache (size, budget, hits and fetches), docker containers and persistent workers. `larder worker` serves them on
 * its --metrics-listen; the actions' outcomes and durations are actionMetrics' (execution/metrics.ts).
 */
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import type { WorkerReport } from '../scheduler/scheduler.ts';
import type { WorkerHostStats } from './worker-host.ts';

export function hostMetrics(metrics: Metrics, source: { host: () => WorkerHostStats; workers: () => WorkerReport[] }) {
  const registers = [metrics.registry];
  const gauge = (name: string, help: string, read: () => number | null) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const value = read();
        if (value === null) this.reset();
        else this.set(value);
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        // The count lives in the cache; the counter shows it as it stands.
        this.reset();
        this.inc(read());
      },
    });
  const sum = (field: keyof WorkerReport) => source.workers().reduce((total, w) => total + w[field], 0);
  gauge('larder_worker_running_actions', 'Actions running on this worker now', () => sum('running'));
  gauge('larder_worker_slots', 'Actions this worker runs at once (--concurrency)', () => sum('slots'));
  gauge('larder_input_cache_bytes', 'Bytes in the input file cache', () => source.host().inputCache.bytes);
  gauge('larder_input_cache_budget_bytes', "The input cache's budget", () => source.host().inputCache.maxBytes);
  gauge('larder_input_cache_files', 'Files in the input file cache', () => source.host().inputCache.files);
  counter('larder_input_cache_hits_total', 'Input files linked from the cache', () => source.host().inputCache.hits);
  counter(
    'larder_input_cache_fetches_total',
    'Input files fetched from the CAS into the cache',
    () => source.host().inputCache.misses,
  );
  gauge('larder_docker_containers', "The docker runner's containers (absent: no docker runner)", () =>
    nullable(source.host().docker, (d) => d.live),
  );
  gauge('larder_docker_idle_containers', 'Of those, idle ones kept warm for reuse', () =>
    nullable(source.host().docker, (d) => d.idle),
  );
  gauge('larder_persistent_workers', 'Persistent worker processes running (absent: none enabled)', () =>
    nullable(source.host().persistentWorkers, (p) => p.live),
  );
}

function nullable<T>(value: T | null, read: (v: T) => number): number | null {
  return value === null ? null : read(value);
}
