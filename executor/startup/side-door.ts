/**
 * The start-up step of the side door (--metrics-listen): /metrics, the status page and, on an executor that
 * executes, the actions page beside it, over HTTP.
 */
import type { AccessGate } from '../../shared/auth/gate.ts';
import { describeAuth } from '../../shared/auth/from-config.ts';
import type { ExecutorConfig } from '../config/executor-options.ts';
import type { Logger } from '../../shared/log.ts';
import type { History } from '../../shared/metrics/history.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import { renderStatusPage, type StatusSnapshot } from '../../shared/status/page.ts';
import { renderActionsPage } from '../../shared/status/actions-page.ts';
import type { RecentActions } from '../execution/recent-actions.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';
import { bindError } from './bind-error.ts';
import type { DisposalStack } from './disposal-stack.ts';
import type { Execution } from './execution.ts';

/** /metrics and /status on --metrics-listen, or null when not asked for. */
export async function startSideDoor(
  options: {
    config: ExecutorConfig;
    gate: AccessGate;
    log: Logger;
    metrics: Metrics;
    status: () => Promise<StatusSnapshot>;
    /** The actions this frontend saw finish; null: no actions page (nothing executes here). */
    recent: RecentActions | null;
  },
  opened: DisposalStack,
): Promise<MetricsServer | null> {
  const { config, status, recent } = options;
  if (config.metricsListen === null) return null;
  const side = await startMetricsServer({
    ...options,
    listen: config.metricsListen,
    routes: (app) => {
      app.get('/status', async (c) => c.html(renderStatusPage(await status())));
      if (recent !== null) app.get('/actions', (c) => c.html(actionsPage(recent, c.req.query('invocation'))));
    },
  }).catch((err: Error) => Promise.reject(bindError('--metrics-listen', config.metricsListen!, err)));
  return opened.use(side, (s) => s.close());
}

/** The actions page, of one invocation when `?invocation=` names one. */
function actionsPage(recent: RecentActions, invocation: string | undefined): string {
  const only = invocation === undefined || invocation.trim() === '' ? null : invocation.trim();
  return renderActionsPage({
    title: 'larder executor',
    now: new Date(),
    records: recent.list(only),
    invocation: only,
    capacity: recent.capacity,
  });
}

/** What the status page shows, read when it is asked for. */
export function statusSnapshot(options: {
  config: ExecutorConfig;
  /** The store as the page names it. */
  storage: string;
  metrics: Metrics;
  history: History;
  execution: Execution | null;
}): () => Promise<StatusSnapshot> {
  const { config, metrics, history, execution } = options;
  const startedAt = new Date();
  return async () => {
    const stats = await execution?.scheduler.stats();
    return {
      title: 'larder executor',
      startedAt,
      now: new Date(),
      totals: metrics.totals(),
      history: history.series(),
      auth: describeAuth(config.auth),
      storage: options.storage,
      execution:
        stats === undefined
          ? undefined
          : { queued: stats.queued, running: stats.running, queues: stats.queues, workers: stats.workers },
    };
  };
}
