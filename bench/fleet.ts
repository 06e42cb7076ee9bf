/**
 * Fleet benchmark (issue 14), standalone: `npx tsx bench/fleet.ts [--actions N] [--latency-actions N]`.
 *
 * Same run, same machine, same total worker concurrency (4):
 *   memory: one `larder executor` process, in-memory queue, one in-process worker at concurrency 4;
 *   redis:  one frontend (`--workers 0 --queue redis://…`) + a redis-server + two `larder worker` processes at
 *           concurrency 2 each.
 * For each: throughput of N distinct trivial actions (`/bin/true`, empty input root) submitted 64 at a time,
 * and Execute → done latency of actions run one at a time (p50/p99): the difference is what Redis adds per action.
 * Prints a table; `bench/run.ts` can import `runFleetBench` and add it to `npm run bench`.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { parseArgs } from 'node:util';
import {
  ActionSchema,
  CommandSchema,
  DigestSchema,
  type Digest,
} from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { ActionFixture, finalResponse } from '../test/executor/execution/fixture.ts';
import { clientsFor, digestOf, drain, reachableTempDir, startExecutorProcess } from '../test/executor/helpers.ts';
import { startFrontend, startWorker } from '../test/executor/fleet/fleet.ts';
import { formatTable, num } from './table.ts';

export interface FleetFigures {
  setup: string;
  actionsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export async function runFleetBench(options: { actions: number; latencyActions: number }): Promise<FleetFigures[]> {
  const figures: FleetFigures[] = [];
  {
    const dir = reachableTempDir('larder-bench-memory-');
    const executor = await startExecutorProcess([
      '--store',
      `disk:${dir}/store`,
      '--workers',
      '1',
      '--concurrency',
      '4',
    ]);
    try {
      figures.push(await measure('memory: 1 process, 1 worker × 4', `127.0.0.1:${executor.port}`, options));
    } finally {
      await executor.stop();
    }
  }
  {
    const dir = reachableTempDir('larder-bench-fleet-');
    const redis = await startRedis();
    const front = await startFrontend({ redis: redis.url, store: `${dir}/store` });
    const workers = await Promise.all(
      [0, 1].map(() => startWorker({ redis: redis.url, frontend: front.url, concurrency: 2 })),
    );
    try {
      figures.push(await measure('redis: 1 frontend + 2 workers × 2', `127.0.0.1:${front.port}`, options));
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
      await front.stop();
      await redis.close();
    }
  }
  return figures;
}

async function measure(
  setup: string,
  address: string,
  options: { actions: number; latencyActions: number },
): Promise<FleetFigures> {
  const clients = clientsFor(address);
  const fixture = new ActionFixture(clients);
  try {
    const run = async (actionDigest: Digest) => {
      const response = finalResponse(await drain(clients.execution.execute({ actionDigest, skipCacheLookup: true })));
      if (response.result?.exitCode !== 0) throw new Error(`an action failed: ${response.status?.message}`);
    };
    const tag = `${setup}-${Date.now()}`;
    // Warm up: connections, the input cache, JIT.
    for (const action of await actions(fixture, 20, `${tag}-warm`)) await run(action);

    const latencies: number[] = [];
    for (const action of await actions(fixture, options.latencyActions, `${tag}-latency`)) {
      const start = performance.now();
      await run(action);
      latencies.push(performance.now() - start);
    }
    latencies.sort((a, b) => a - b);

    const load = await actions(fixture, options.actions, `${tag}-load`);
    const start = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < load.length) await run(load[next++]!);
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    return {
      setup,
      actionsPerSecond: load.length / seconds,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
    };
  } finally {
    clients.close();
  }
}

/** `count` distinct trivial actions, uploaded. */
async function actions(fixture: ActionFixture, count: number, tag: string): Promise<Digest[]> {
  const [command] = await fixture.upload(toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/true'] })));
  const root = await fixture.directory({});
  const blobs = Array.from({ length: count }, (_, i) =>
    toBinary(
      ActionSchema,
      create(ActionSchema, { commandDigest: command, inputRootDigest: root, salt: Buffer.from(`${tag}-${i}`) }),
    ),
  );
  for (let at = 0; at < blobs.length; at += 500) await fixture.upload(...blobs.slice(at, at + 500));
  return blobs.map((b) => create(DigestSchema, digestOf(b)));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

export function fleetTable(figures: FleetFigures[]): string {
  const base = figures[0]!;
  return formatTable(
    ['setup', 'actions/s', 'vs memory', 'p50 ms (1 at a time)', 'p99 ms', 'p50 added', 'p99 added'],
    figures.map((f) => [
      f.setup,
      num(f.actionsPerSecond),
      `${num(f.actionsPerSecond / base.actionsPerSecond)}×`,
      num(f.p50Ms),
      num(f.p99Ms),
      num(f.p50Ms - base.p50Ms),
      num(f.p99Ms - base.p99Ms),
    ]),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { actions: { type: 'string', default: '1000' }, 'latency-actions': { type: 'string', default: '200' } },
  });
  const figures = await runFleetBench({
    actions: Number(values.actions),
    latencyActions: Number(values['latency-actions']),
  });
  console.log(fleetTable(figures));
}
