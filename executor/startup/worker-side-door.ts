/**
 * `larder worker --metrics-listen`: the worker's own /metrics, /healthz and /status, on the executor's metrics
 * server (metrics-server.ts) and status page (shared/status/page.ts), behind the same authentication.
 */
import { collectDefaultMetrics } from 'prom-client';
import { describeAuth, openAccessGate } from '../../shared/auth/from-config.ts';
import { checkExposure } from '../../shared/auth/exposure.ts';
import type { Logger } from '../../shared/log.ts';
import { History } from '../../shared/metrics/history.ts';
import { Metrics } from '../../shared/metrics/metrics.ts';
import { renderStatusPage } from '../../shared/status/page.ts';
import type { WorkerConfig } from '../config/worker-options.ts';
import { actionMetrics, type ExecutionMetrics } from '../execution/metrics.ts';
import { describeWorkerPlatform } from '../reapi/platform.ts';
import { hostMetrics } from '../worker/host-metrics.ts';
import type { Worker } from '../worker/worker.ts';
import type { WorkerHost } from '../worker/worker-host.ts';
import { bindError } from './bind-error.ts';
import { DisposalStack } from './disposal-stack.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';

export interface WorkerSideDoor {
  /** Counts a finished action (the Worker's onFinished). */
  readonly actions: ExecutionMetrics;
  /** Starts serving once the worker runs; null when --metrics-listen is off. */
  serve(worker: { name: string; worker: Worker; host: WorkerHost }): Promise<MetricsServer | null>;
  close(): Promise<void>;
}

export async function openWorkerSideDoor(config: WorkerConfig, log: Logger): Promise<WorkerSideDoor> {
  const metrics = new Metrics();
  const actions = actionMetrics(metrics);
  const opened = new DisposalStack();
  return {
    actions,
    async serve({ name, worker, host }) {
      const listen = config.metricsListen;
      if (listen === null) return null;
      checkExposure({ host: listen.host, auth: config.auth, tls: false, plainProtocol: 'http' }, log);
      collectDefaultMetrics({ register: metrics.registry });
      hostMetrics(metrics, { host: () => host.stats(), workers: () => [worker.report()] });
      const gate = opened.use(await openAccessGate(config.auth, log), (g) => g.close());
      const history = opened.use(new History({ totals: () => metrics.totals() }).start(), (h) => h.stop());
      const startedAt = new Date();
      const status = () => {
        const report = worker.report();
        return renderStatusPage({
          title: `larder worker ${name}`,
          startedAt,
          now: new Date(),
          totals: metrics.totals(),
          history: history.series(),
          auth: describeAuth(config.auth),
          storage: `no store of its own: blobs through the frontend ${config.frontend}, inputs cached in ${config.execution.workDir}`,
          workerHost: {
            worker: { platform: describeWorkerPlatform(worker.platform), ...report },
            running: worker.running(),
            ...host.stats(),
          },
        });
      };
      const server = await startMetricsServer({
        listen,
        gate,
        log,
        metrics,
        routes: (app) => app.get('/status', (c) => c.html(status())),
      }).catch((err: Error) => Promise.reject(bindError('--metrics-listen', listen, err)));
      return opened.use(server, (s) => s.close());
    },
    close: () => opened.dispose(),
  };
}
