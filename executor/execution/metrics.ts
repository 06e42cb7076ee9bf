/**
 * Execution figures on the server's registry: the queue per platform, running actions and live workers (asked of
 * the scheduler at each scrape, so a Redis queue reports the whole fleet's), and the actions this process's
 * workers finished by outcome, with their duration (a `larder worker` counts its own: actionMetrics).
 */
import type { ExecuteResponse } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import { Code } from '../reapi/grpc-status.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';

/** success: exit 0; failed: any other exit code; timeout, cancelled; error: the action could not be run. */
export type ActionOutcome = 'success' | 'failed' | 'timeout' | 'cancelled' | 'error';

export interface ExecutionMetrics {
  /** A worker finished an action after `seconds` (queue time not included). */
  finished(response: ExecuteResponse, seconds: number): void;
}

export interface ExecutionSource {
  scheduler: Scheduler;
}

export function executionMetrics(metrics: Metrics, source: () => ExecutionSource | null): ExecutionMetrics {
  const registers = [metrics.registry];
  const stats = sharedPerScrape(async () => (await source()?.scheduler.stats()) ?? null);
  new Gauge({
    name: 'larder_execution_queued',
    help: 'Actions waiting for a worker, by platform (their routing constraints): the whole fleet with a Redis queue',
    labelNames: ['platform'] as const,
    registers,
    async collect() {
      this.reset();
      for (const q of (await stats())?.queues ?? []) this.set({ platform: q.platform }, q.queued);
    },
  });
  new Gauge({
    name: 'larder_execution_oldest_queued_seconds',
    help: 'How long the oldest action waiting for a worker has waited, by platform (0: none waits)',
    labelNames: ['platform'] as const,
    registers,
    async collect() {
      this.reset();
      for (const q of (await stats())?.queues ?? []) this.set({ platform: q.platform }, q.oldestQueuedSeconds);
    },
  });
  new Gauge({
    name: 'larder_execution_running',
    help: 'Actions being executed',
    registers,
    async collect() {
      this.set((await stats())?.running ?? 0);
    },
  });
  new Gauge({
    name: 'larder_workers',
    help: "Live workers by platform: this process's, or with a Redis queue the whole fleet's",
    labelNames: ['platform'] as const,
    registers,
    async collect() {
      this.reset();
      const platforms = ((await stats())?.workers ?? []).map((w) => w.platform);
      for (const [platform, count] of countBy(platforms)) this.set({ platform }, count);
    },
  });
  return actionMetrics(metrics);
}

/** The actions this process's workers finished, by outcome, with their duration (executor and `larder worker`). */
export function actionMetrics(metrics: Metrics): ExecutionMetrics {
  const registers = [metrics.registry];
  const actions = new Counter({
    name: 'larder_actions_total',
    help: "Actions this process's workers finished, by outcome (success, failed, timeout, cancelled, error)",
    labelNames: ['outcome'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'larder_action_duration_seconds',
    help: 'How long actions took on a worker (staging, running, uploading), by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600],
    registers,
  });
  return {
    finished(response, seconds) {
      const outcome = actionOutcome(response);
      actions.inc({ outcome });
      duration.observe({ outcome }, seconds);
    },
  };
}

/** One call of `read` serves every gauge of a scrape (they collect at once): one round of Redis calls, not four. */
function sharedPerScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | null = null;
  return () => {
    pending ??= read().finally(() => {
      pending = null;
    });
    return pending;
  };
}

export function actionOutcome(response: ExecuteResponse): ActionOutcome {
  const code = response.status?.code ?? Code.OK;
  if (code === Code.OK) return (response.result?.exitCode ?? 0) === 0 ? 'success' : 'failed';
  if (code === Code.DEADLINE_EXCEEDED) return 'timeout';
  if (code === Code.CANCELLED || code === Code.UNAVAILABLE) return 'cancelled';
  return 'error';
}

function countBy(values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return counts;
}
