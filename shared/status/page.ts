/**
 * The status page (`GET /status`) of the edge and of the executor: one self-contained HTML document, with uPlot's
 * script and styles inline (shared/status/uplot.generated.ts), so it needs no CDN, no other request and no file
 * read, and a browser that had to authenticate for the page needs nothing more. Runtime-neutral: a string in,
 * a string out.
 *
 * Everything shown comes from a StatusSnapshot; configuration is described in words by the same functions that
 * write the start-up log (never a secret), and every text is escaped.
 */
import type { HistoryPoint } from '../metrics/history.ts';
import type { Totals } from '../metrics/metrics.ts';
import { UPLOT_CSS, UPLOT_JS } from './uplot.generated.ts';

export interface StatusSnapshot {
  /** `larder edge (node)`, `larder executor`. */
  title: string;
  startedAt: Date;
  now: Date;
  totals: Totals;
  history: HistoryPoint[];
  /** describeAuth(): authenticators and what anonymous may do. */
  auth: string;
  /** describeStore(): the store graph. */
  storage: string;
  /** The executor's queue and workers; absent on the edge and on an executor that executes nothing. */
  execution?: ExecutionSnapshot;
  /** A worker host's own state: on `larder worker`'s page. */
  workerHost?: WorkerHostSnapshot;
}

export interface ExecutionSnapshot {
  queued: number;
  running: number;
  /** Per platform queue: queued actions and how long the oldest has waited. */
  queues: Array<{ platform: string; queued: number; oldestQueuedSeconds: number }>;
  /** The live workers (a fleet's from Redis): name, platform, running of slots, last heartbeat, done and failed. */
  workers: Array<{
    name: string;
    platform: string;
    running: number;
    slots: number;
    done: number;
    failed: number;
    lastSeen: Date;
  }>;
}

export interface WorkerHostSnapshot {
  /** This worker: its platform and its figures since it started. */
  worker: { platform: string; running: number; slots: number; done: number; failed: number };
  /** The actions running here now. */
  running: Array<{ operation: string; action: string; since: Date }>;
  inputCache: { files: number; bytes: number; maxBytes: number; hits: number; misses: number };
  /** Containers of the docker runner (null: no docker runner). */
  docker: { live: number; idle: number } | null;
  /** Persistent worker processes (null: none enabled). */
  persistentWorkers: { live: number; started: number; requests: number } | null;
}

export function renderStatusPage(s: StatusSnapshot): string {
  const answered = s.totals.hits + s.totals.misses;
  const hitRatio = answered === 0 ? '–' : `${((100 * s.totals.hits) / answered).toFixed(1)} %`;
  const lastHour = s.history.reduce((sum, p) => sum + p.requests, 0);
  const figures: Array<[string, string, string]> = [
    ['hit-ratio', 'hit ratio (since start)', hitRatio],
    ['requests', 'cache requests (since start)', String(s.totals.requests)],
    ['requests-last-hour', 'cache requests (last hour)', String(lastHour)],
    ['bytes-served', 'bytes served', formatBytes(s.totals.bytesOut)],
    ['bytes-stored', 'bytes received for storing', formatBytes(s.totals.bytesIn)],
  ];
  const chartData = [
    s.history.map((p) => p.t),
    s.history.map((p) => p.requests),
    s.history.map((p) => (p.hitRatio === null ? null : 100 * p.hitRatio)),
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(s.title)} — status</title>
<style>${UPLOT_CSS}</style>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; color: #1d2330; }
  h1 { font-size: 1.4rem; margin-bottom: 0.2rem; } h2 { font-size: 1.05rem; margin: 1.6rem 0 0.5rem; }
  .muted { color: #667085; }
  .figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: 0.6rem; }
  .figure { border: 1px solid #d0d5dd; border-radius: 6px; padding: 0.5rem 0.7rem; }
  .figure b { display: block; font-size: 1.3rem; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #eaecf0; }
  meter { width: 12rem; }
</style>
</head>
<body>
<h1>${escapeHtml(s.title)}</h1>
<div class="muted">up since ${escapeHtml(s.startedAt.toISOString())} · page of ${escapeHtml(s.now.toISOString())}</div>

<h2>Traffic</h2>
<div class="figures">
${figures.map(([id, label, value]) => `  <div class="figure"><span class="muted">${escapeHtml(label)}</span><b data-figure="${id}">${escapeHtml(value)}</b></div>`).join('\n')}
</div>
<h2>Requests and hit ratio, last hour (per minute)</h2>
<div id="chart" data-points="${s.history.length}"></div>

<h2>Storage</h2>
<p data-config="storage">${escapeHtml(s.storage)}</p>
${s.totals.stores.length === 0 ? '<p class="muted">no store here has a size budget (S3 expires objects by lifecycle rules)</p>' : storesTable(s.totals.stores)}

<h2>Authentication</h2>
<p data-config="auth">${escapeHtml(s.auth)}</p>
${s.execution === undefined ? '' : executionSection(s.execution, s.now)}
${s.workerHost === undefined ? '' : workerHostSection(s.workerHost, s.now)}
<script type="application/json" id="chart-data">${jsonForScript(chartData)}</script>
<script>${UPLOT_JS}</script>
<script>${CHART_SCRIPT}</script>
</body>
</html>
`;
}

/** Draws the chart and marks the element `data-drawn` once uPlot has painted it (the browser test waits for that). */
const CHART_SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('chart-data').textContent);
  var el = document.getElementById('chart');
  var now = Date.now() / 1000;
  new uPlot({
    width: Math.min(el.clientWidth || 900, 900), height: 280,
    scales: { x: { time: true, range: function () { return [now - 3600, now]; } }, pct: { range: [0, 100] } },
    axes: [{}, { label: 'requests / min' }, { scale: 'pct', side: 1, label: 'hit ratio %', grid: { show: false } }],
    series: [
      {},
      { label: 'requests', stroke: '#2563eb', fill: 'rgba(37,99,235,0.15)', width: 2, points: { show: true, size: 6 } },
      { label: 'hit ratio %', scale: 'pct', stroke: '#16a34a', width: 2, points: { show: true, size: 6 } },
    ],
    hooks: { draw: [function () { el.dataset.drawn = 'true'; }] },
  }, data, el);
})();
`;

function storesTable(stores: Totals['stores']): string {
  const rows = stores.map((store) => {
    const share = store.budget === 0 ? 0 : store.bytes / store.budget;
    return `  <tr data-store="${escapeHtml(store.store)}-${escapeHtml(store.tier)}"><td>${escapeHtml(store.store)}</td><td>${escapeHtml(store.tier)}</td><td>${formatBytes(store.bytes)} of ${formatBytes(store.budget)}</td><td><meter min="0" max="1" value="${share.toFixed(4)}"></meter> ${(100 * share).toFixed(1)} %</td></tr>`;
  });
  return `<table>\n  <tr><th>store</th><th>tier</th><th>used</th><th></th></tr>\n${rows.join('\n')}\n</table>`;
}

function executionSection(execution: ExecutionSnapshot, now: Date): string {
  const queues = execution.queues.map(
    (q) =>
      `  <tr data-queue="${escapeHtml(q.platform)}"><td>${escapeHtml(q.platform)}</td><td>${q.queued}</td><td>${formatSeconds(q.oldestQueuedSeconds)}</td></tr>`,
  );
  const workers = execution.workers.map(
    (w) =>
      `  <tr data-worker="${escapeHtml(w.name)}"><td>${escapeHtml(w.name)}</td><td>${escapeHtml(w.platform)}</td><td>${w.running} of ${w.slots}</td><td>${formatSeconds(secondsBetween(w.lastSeen, now))} ago</td><td>${w.done}</td><td>${w.failed}</td></tr>`,
  );
  return `
<h2>Execution</h2>
<p><a href="actions" data-link="actions">the actions that ran</a>: the last few hundred, failing ones first</p>
<div class="figures">
  <div class="figure"><span class="muted">queued actions</span><b data-figure="queued">${execution.queued}</b></div>
  <div class="figure"><span class="muted">running actions</span><b data-figure="running">${execution.running}</b></div>
  <div class="figure"><span class="muted">live workers</span><b data-figure="workers">${execution.workers.length}</b></div>
</div>
<h2>Queue by platform</h2>
${table(['platform', 'queued', 'oldest has waited'], queues, 'no action has been queued')}
<h2>Workers</h2>
${table(['worker', 'platform', 'running', 'last heartbeat', 'done', 'failed'], workers, 'no live worker')}`;
}

function workerHostSection(host: WorkerHostSnapshot, now: Date): string {
  const running = host.running.map(
    (r) =>
      `  <tr data-running="${escapeHtml(r.operation)}"><td>${escapeHtml(r.operation)}</td><td>${escapeHtml(r.action)}</td><td>${formatSeconds(secondsBetween(r.since, now))}</td></tr>`,
  );
  const { inputCache: cache, docker, persistentWorkers: persistent, worker } = host;
  return `
<h2>This worker</h2>
<p data-host="platform">${escapeHtml(worker.platform)}</p>
<div class="figures">
  <div class="figure"><span class="muted">running</span><b data-figure="running">${worker.running} of ${worker.slots}</b></div>
  <div class="figure"><span class="muted">actions done</span><b data-figure="done">${worker.done}</b></div>
  <div class="figure"><span class="muted">of them failed</span><b data-figure="failed">${worker.failed}</b></div>
</div>
<h2>Running here</h2>
${table(['operation', 'action', 'running for'], running, 'no action is running')}
<h2>Input cache</h2>
<div class="figures">
  <div class="figure"><span class="muted">files</span><b data-figure="input-files">${cache.files}</b></div>
  <div class="figure"><span class="muted">size</span><b data-figure="input-bytes">${formatBytes(cache.bytes)} of ${formatBytes(cache.maxBytes)}</b></div>
  <div class="figure"><span class="muted">hits</span><b data-figure="input-hits">${cache.hits}</b></div>
  <div class="figure"><span class="muted">fetched</span><b data-figure="input-misses">${cache.misses}</b></div>
</div>
<h2>Docker and persistent workers</h2>
<p data-host="docker">${docker === null ? 'no docker runner' : `${docker.live} containers, ${docker.idle} of them idle and warm`}</p>
<p data-host="persistent">${persistent === null ? 'no persistent workers enabled' : `${persistent.live} persistent workers running, ${persistent.started} started, ${persistent.requests} actions answered`}</p>`;
}

function table(headings: readonly string[], rows: readonly string[], empty: string): string {
  const body = rows.length === 0 ? [`  <tr><td colspan="${headings.length}" class="muted">${empty}</td></tr>`] : rows;
  return `<table>\n  <tr>${headings.map((h) => `<th>${h}</th>`).join('')}</tr>\n${body.join('\n')}\n</table>`;
}

function secondsBetween(from: Date, to: Date): number {
  return Math.max(0, (to.getTime() - from.getTime()) / 1000);
}

/** `4.2 s`, `3 min 5 s`, `2 h 10 min`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON inside a <script> element: `<` escaped, so no value can close the element. */
function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}
