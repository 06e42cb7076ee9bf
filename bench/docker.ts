/**
 * Per-action overhead of the docker runner, in one run against a private Docker engine (test/executor/docker/
 * engine.ts) and a real in-process executor: Execute → result of `/bin/true` with the local runner, in a container
 * per action, and with dockerReuse=True (an exec in a warm container). Rounds alternate the three so a busy
 * machine slows them alike; every request really runs (distinct salts, do_not_cache) and must succeed. The warm-up
 * (image preparation, the first warm container) is not timed.
 *
 *   import { runDockerBench, formatDockerRows } from './docker.ts';
 *   console.log(formatDockerRows(await runDockerBench({ quick: true })));
 *
 * Or on its own: `npx tsx bench/docker.ts [--quick]`. Needs root, dockerd and /bin/busybox.
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ActionFixture } from '../test/executor/execution/fixture.ts';
import { startTestServer } from '../test/executor/helpers.ts';
import { startTestEngine } from '../test/executor/docker/engine.ts';
import { formatTable, num } from './table.ts';

export interface DockerRow {
  mode: 'local' | 'docker' | 'docker + dockerReuse';
  actions: number;
  p50Ms: number;
  p99Ms: number;
  /** p50 minus the local runner's p50. */
  overheadMs: number;
}

export async function runDockerBench(options: { quick?: boolean } = {}): Promise<DockerRow[]> {
  const rounds = options.quick ? 10 : 40;
  const engine = await startTestEngine(['busybox']);
  const server = await startTestServer({
    args: ['--allow-docker', '--docker-host', engine.host, '--concurrency', '1'],
  }).catch(async (err) => {
    await engine.stop();
    throw err;
  });
  try {
    const fx = new ActionFixture(server.clients);
    const image = `docker://${engine.images.busybox}`;
    const modes: Array<[DockerRow['mode'], Record<string, string>]> = [
      ['local', {}],
      ['docker', { 'container-image': image }],
      ['docker + dockerReuse', { 'container-image': image, dockerReuse: 'True' }],
    ];
    let salt = 0;
    const once = async (platform: Record<string, string>): Promise<number> => {
      const actionDigest = await fx.action({
        salt: `bench-${++salt}`,
        doNotCache: true,
        platform,
        command: { arguments: ['/bin/true'] },
      });
      const started = performance.now();
      const { response } = await fx.execute(actionDigest);
      const elapsed = performance.now() - started;
      if ((response.status?.code ?? 0) !== 0 || response.result?.exitCode !== 0)
        throw new Error(`a bench action failed: ${response.status?.message ?? ''} ${response.message}`);
      return elapsed;
    };
    for (const [, platform] of modes) for (let i = 0; i < 2; i++) await once(platform); // warm-up
    const latencies = new Map(modes.map(([mode]) => [mode, [] as number[]]));
    for (let round = 0; round < rounds; round++)
      for (const [mode, platform] of modes) latencies.get(mode)!.push(await once(platform));
    const rows = modes.map(([mode]) => {
      const sorted = latencies.get(mode)!.sort((a, b) => a - b);
      return {
        mode,
        actions: sorted.length,
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        overheadMs: 0,
      };
    });
    for (const row of rows) row.overheadMs = row.p50Ms - rows[0]!.p50Ms;
    return rows;
  } finally {
    await server.stop();
    await engine.stop();
  }
}

export function formatDockerRows(rows: DockerRow[]): string {
  return formatTable(
    ['runner (Execute of /bin/true)', 'actions', 'p50 ms', 'p99 ms', 'p50 over local ms'],
    rows.map((r) => [r.mode, r.actions, num(r.p50Ms), num(r.p99Ms), r.mode === 'local' ? '—' : num(r.overheadMs)]),
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(formatDockerRows(await runDockerBench({ quick: process.argv.includes('--quick') })));
}
