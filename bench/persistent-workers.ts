/**
 * Remote persistent workers against the alternatives, with the real Bazel 4.2.3 on the test workspace's
 * `//:slow_uppers` (twenty actions of a JSON worker that takes 1 s to start), each build cold (nothing cached):
 *
 *   local worker   Bazel's own --strategy=UpperJson=worker (its worker processes stay up between builds)
 *   remote persistent   --remote_executor against `larder executor --persistent-workers local`
 *   remote one-shot     --remote_executor against an executor without persistent workers
 *
 * Round 1 starts every worker from nothing; later rounds find them warm (Bazel's local workers and the
 * executor's slots both outlive a build). Standalone: `npx tsx bench/persistent-workers.ts`.
 */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BazelWorkspace, bazelAvailable, remoteExecutionFlags } from '../test/bazel/bazel.ts';
import { reachableTempDir } from '../test/executor/helpers.ts';
import { build, type Executor, startBenchExecutor } from './execution.ts';
import { formatTable } from './table.ts';

const TARGETS = ['//:slow_uppers'];

export interface PersistentRow {
  round: number;
  localWorkerMs: number;
  remotePersistentMs: number;
  remoteOneShotMs: number;
}

export async function runPersistentWorkerBench(rounds = 2): Promise<PersistentRow[] | null> {
  if (!bazelAvailable()) return null;
  const dir = reachableTempDir('larder-bench-persistent-');
  const executors: Executor[] = [];
  let ws: BazelWorkspace | undefined;
  try {
    // Both executors run four actions at once, as Bazel's local worker strategy does by default (--worker_max_instances=4).
    const persistent = await startBenchExecutor(
      `${dir}/persistent`,
      [],
      ['--persistent-workers', 'local', '--concurrency', '4'],
    );
    executors.push(persistent);
    const oneShot = await startBenchExecutor(`${dir}/one-shot`, [], ['--concurrency', '4']);
    executors.push(oneShot);
    ws = await BazelWorkspace.create();
    const remote = (executor: Executor) => remoteExecutionFlags(executor.url);
    const local = ['--strategy=UpperJson=worker', '--worker_max_instances=UpperJson=4'];
    // Untimed: the Bazel server starts and loads the workspace, so the rounds time execution alone.
    await ws.run(['build', '--nobuild', '--', ...TARGETS]);
    const rows: PersistentRow[] = [];
    for (let round = 1; round <= rounds; round++) {
      await ws.clean();
      const localRun = await build(ws, 'local', local, TARGETS);
      await ws.clean();
      const persistentRun = await build(ws, 'remote', remote(persistent), TARGETS);
      await ws.clean();
      const oneShotRun = await build(ws, 'remote', remote(oneShot), TARGETS);
      rows.push({
        round,
        localWorkerMs: localRun.durationMs,
        remotePersistentMs: persistentRun.durationMs,
        remoteOneShotMs: oneShotRun.durationMs,
      });
    }
    return rows;
  } finally {
    await ws?.shutdown();
    for (const executor of executors) await executor.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export function formatPersistentRows(rows: PersistentRow[] | null): string {
  if (rows === null) return 'persistent workers: Bazel is not installed; skipped';
  const s = (ms: number) => (ms / 1000).toFixed(2);
  const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  return formatTable(
    [
      'bazel build //:slow_uppers (20 actions, 1 s start-up)',
      'local worker s',
      'remote persistent s',
      'remote one-shot s',
      'persistent / local worker',
      'one-shot / persistent',
    ],
    rows.map((r) => [
      `round ${r.round}${r.round === 1 ? ' (workers cold)' : ' (workers warm)'}`,
      s(r.localWorkerMs),
      s(r.remotePersistentMs),
      s(r.remoteOneShotMs),
      x(r.remotePersistentMs, r.localWorkerMs),
      x(r.remoteOneShotMs, r.remotePersistentMs),
    ]),
  );
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  console.log(formatPersistentRows(await runPersistentWorkerBench(Number(process.env.BENCH_ROUNDS ?? 2))));
}
