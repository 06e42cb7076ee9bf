/**
 * The actions page (`GET /actions` beside `/status`): what ran, for people. The last few hundred actions a
 * frontend saw finish, failing ones first with the tail of their stderr, then the newest; each with Bazel's
 * mnemonic and target (RequestMetadata), the worker, the time it waited in the queue and took to fetch its
 * inputs, execute and upload its outputs (ExecutedActionMetadata), its exit code and whether the action cache
 * answered. `?invocation=ID` shows one build's actions. Runtime-neutral: records in, a string out, every text
 * escaped; no script.
 */
import { escapeHtml } from './page.ts';

export interface ActionRecord {
  /** The operation's name, `operations/<uuid>`: one record per operation. */
  operation: string;
  /** When this frontend saw it finish (ms since the epoch). */
  finishedAt: number;
  /** The action digest's hash. */
  action: string;
  /** From the call's RequestMetadata; '' when the client sent none. */
  invocation: string;
  mnemonic: string;
  target: string;
  /** ExecutedActionMetadata.worker; '' when unknown (no result). */
  worker: string;
  /** Stage durations in ms; null when the result does not say. A cached result's are its original run's. */
  queuedMs: number | null;
  fetchMs: number | null;
  executeMs: number | null;
  uploadMs: number | null;
  /** The command's exit code; null when there is no result (the run failed with `status`). */
  exitCode: number | null;
  /** The execution's status, as a gRPC code name and message (`DEADLINE_EXCEEDED: …`); '' when OK. */
  status: string;
  /** The action cache answered the Execute call: nothing ran now. */
  cached: boolean;
  /** The last lines of stderr of a failed action, whole lines only ('' otherwise). */
  stderrTail: string;
}

export interface ActionsView {
  title: string;
  now: Date;
  /** Newest first, already filtered. */
  records: ActionRecord[];
  /** The invocation shown alone, or null for all. */
  invocation: string | null;
  /** How many records the frontend keeps at most. */
  capacity: number;
}

export function actionFailed(record: ActionRecord): boolean {
  return record.status !== '' || (record.exitCode ?? 0) !== 0;
}

export function renderActionsPage(view: ActionsView): string {
  const failing = view.records.filter(actionFailed);
  const ordered = [...failing, ...view.records.filter((r) => !actionFailed(r))];
  const cached = view.records.filter((r) => r.cached).length;
  const scope =
    view.invocation === null
      ? `the last ${view.records.length} actions this frontend saw finish (it keeps ${view.capacity})`
      : `${view.records.length} actions of invocation ${view.invocation}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(view.title)} — actions</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 80rem; padding: 0 1rem; color: #1d2330; }
  h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
  .muted { color: #667085; } a { color: #2563eb; }
  form { margin: 1rem 0; } input { width: 24rem; font: inherit; padding: 0.2rem 0.4rem; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #eaecf0; vertical-align: top; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  tr.failed td { background: #fef3f2; } tr.failed .result { color: #b42318; font-weight: 600; }
  tr.stderr td { background: #fef3f2; border-bottom: 2px solid #fda29b; }
  pre { margin: 0; white-space: pre-wrap; word-break: break-all; font-size: 12px; }
  .tag { font-size: 12px; border: 1px solid #d0d5dd; border-radius: 4px; padding: 0 0.3rem; }
</style>
</head>
<body>
<h1>${escapeHtml(view.title)}: actions</h1>
<div class="muted">${escapeHtml(scope)} · ${failing.length} failed · ${cached} from the cache (their times are the original run's) · page of ${escapeHtml(view.now.toISOString())} · <a href="status">status</a></div>
<form method="get" action="actions">
  <label>invocation id <input name="invocation" value="${escapeHtml(view.invocation ?? '')}" placeholder="Bazel's invocation id"></label>
  <button type="submit">show</button>${view.invocation === null ? '' : ' <a href="actions">all invocations</a>'}
</form>
<table>
  <tr><th>result</th><th>mnemonic</th><th>target</th><th>worker</th><th>queued</th><th>fetch</th><th>execute</th><th>upload</th><th>invocation</th><th>finished (UTC)</th></tr>
${ordered.length === 0 ? '  <tr><td colspan="10" class="muted">no actions yet</td></tr>' : ordered.map(actionRows).join('\n')}
</table>
</body>
</html>
`;
}

function actionRows(r: ActionRecord): string {
  const failed = actionFailed(r);
  const result = r.status !== '' ? r.status.split(':')[0]! : `exit ${r.exitCode}`;
  const invocation =
    r.invocation === ''
      ? '<span class="muted">–</span>'
      : `<a href="actions?invocation=${encodeURIComponent(r.invocation)}" title="${escapeHtml(r.invocation)}">${escapeHtml(shortId(r.invocation))}</a>`;
  const row = `  <tr data-action="${escapeHtml(r.operation)}" data-failed="${failed}" class="${failed ? 'failed' : 'ok'}"><td class="result">${escapeHtml(result)}${r.cached ? ' <span class="tag">cached</span>' : ''}</td><td>${text(r.mnemonic)}</td><td>${text(r.target)}</td><td>${text(r.worker)}</td>${[r.queuedMs, r.fetchMs, r.executeMs, r.uploadMs].map((ms) => `<td class="num">${formatMs(ms)}</td>`).join('')}<td>${invocation}</td><td class="num">${escapeHtml(new Date(r.finishedAt).toISOString().slice(11, 19))}</td></tr>`;
  if (!failed) return row;
  const message = r.status === '' ? '' : `${r.status}\n`;
  const tail = r.stderrTail === '' ? '(no stderr)' : r.stderrTail;
  return `${row}\n  <tr class="stderr" data-stderr="${escapeHtml(r.operation)}"><td colspan="10"><pre>${escapeHtml(message + tail)}</pre></td></tr>`;
}

/** Bazel's invocation ids are UUIDs: their first eight characters tell a page's few invocations apart. */
function shortId(id: string): string {
  return id.length <= 12 ? id : `${id.slice(0, 8)}…`;
}

function text(value: string): string {
  return value === '' ? '<span class="muted">–</span>' : escapeHtml(value);
}

function formatMs(ms: number | null): string {
  if (ms === null) return '<span class="muted">–</span>';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
