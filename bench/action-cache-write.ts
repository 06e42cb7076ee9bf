/**
 * UpdateActionResult against `larder executor` processes on disk stores (issue 18: a fleet's worker writes every
 * action's result this way, and the write was half of what the fleet added to an action): one call at a time
 * (p50/p99 latency, beside a GetCapabilities call's: what the round trip costs without the write) and 8 in flight
 * (calls per second), with the executor's CPU per write.
 * `npx tsx bench/action-cache-write.ts` (after `npm run build`: the executor runs dist/); BENCH_BEFORE=path of another
 * larder checkout, built, runs its executor beside this one, the two measured in alternating blocks (A-B-B-A,
 * interleave.ts), so a drift in the machine's load weighs on both. BENCH_AC_QUADS=N rounds (default 4).
 */
import { create } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { createClient } from '../executor/grpc/client.ts';
import {
  ActionCache,
  ActionResultSchema,
  Capabilities,
  DigestSchema,
  OutputFileSchema,
} from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { reachableTempDir, sha256 } from '../test/executor/helpers.ts';
import { REPO_ROOT } from '../test/helpers/tools.ts';
import { startBenchExecutor } from './execution.ts';
import { formatSpread, interleave, percentileOf, spread } from './interleave.ts';
import { cpuNanoseconds } from './proc.ts';
import { formatTable, num } from './table.ts';

const SERIAL_CALLS = 60;
const LOADED_CALLS = 160;
const IN_FLIGHT = 8;

interface Target {
  label: string;
  root: string;
}

/** A distinct action result of a trivial action's size (about 200 bytes), under a fresh action digest. */
function entry() {
  const action = randomBytes(32);
  const output = randomBytes(32);
  return {
    actionDigest: create(DigestSchema, { hash: sha256(action), sizeBytes: 140n }),
    actionResult: create(ActionResultSchema, {
      exitCode: 0,
      outputFiles: [create(OutputFileSchema, { path: 'out/a.txt', digest: { hash: sha256(output), sizeBytes: 32n } })],
      stdoutDigest: create(DigestSchema, { hash: sha256(new Uint8Array()), sizeBytes: 0n }),
    }),
  };
}

async function main(): Promise<void> {
  const targets: Target[] = [{ label: 'this checkout', root: REPO_ROOT }];
  if (process.env.BENCH_BEFORE) targets.push({ label: 'before', root: resolve(process.env.BENCH_BEFORE) });
  const quads = Number(process.env.BENCH_AC_QUADS ?? 4);
  const dirs = targets.map(() => reachableTempDir('larder-bench-ac-'));
  const servers = await Promise.all(
    targets.map((t, i) => startBenchExecutor(dirs[i]!, [], ['--workers', '0'], t.root)),
  );
  const clients = servers.map((s) => createClient(ActionCache, s.address));
  const capabilities = servers.map((s) => createClient(Capabilities, s.address));
  const serialMs = targets.map((): number[][] => []);
  const trivialMs = targets.map((): number[] => []);
  const loadedPerSecond = targets.map((): number[] => []);
  const cpuNs = targets.map(() => 0);
  try {
    // A first write starts whatever the server starts lazily; not measured.
    for (const client of clients) await client.updateActionResult(entry());
    const labels = targets.map((t) => t.label);
    await interleave(labels, quads, async (label) => {
      const at = labels.indexOf(label);
      const client = clients[at]!;
      // The bare cost of a call (its round trip, with nothing stored), as a baseline for the writes'.
      for (let i = 0; i < SERIAL_CALLS / 2; i++) {
        const started = performance.now();
        await capabilities[at]!.getCapabilities({});
        trivialMs[at]!.push(performance.now() - started);
      }
      const cpuBefore = cpuNanoseconds(servers[at]!.pid);
      const times: number[] = [];
      for (let i = 0; i < SERIAL_CALLS; i++) {
        const request = entry();
        const started = performance.now();
        await client.updateActionResult(request);
        times.push(performance.now() - started);
      }
      serialMs[at]!.push(times);
      const requests = Array.from({ length: LOADED_CALLS }, entry);
      const started = performance.now();
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          for (let next = requests.pop(); next !== undefined; next = requests.pop())
            await client.updateActionResult(next);
        }),
      );
      loadedPerSecond[at]!.push(LOADED_CALLS / ((performance.now() - started) / 1000));
      cpuNs[at]! += cpuNanoseconds(servers[at]!.pid) - cpuBefore;
    });
  } finally {
    for (const client of [...clients, ...capabilities]) client.close();
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
  const rows = targets.map((t, at) => {
    const all = serialMs[at]!.flat();
    const blockP50 = serialMs[at]!.map((times) => percentileOf(times, 0.5));
    return [
      t.label,
      num(percentileOf(all, 0.5)),
      num(percentileOf(all, 0.99)),
      formatSpread(spread(blockP50)),
      num(percentileOf(trivialMs[at]!, 0.5)),
      formatSpread(spread(loadedPerSecond[at]!)),
      Math.round(cpuNs[at]! / 1000 / (quads * 2 * (SERIAL_CALLS + LOADED_CALLS))),
    ];
  });
  console.log(
    formatTable(
      [
        'executor (--workers 0, disk store)',
        'p50 ms (1 at a time)',
        'p99 ms',
        "blocks' p50 ms: median (low–high)",
        'GetCapabilities p50 ms',
        `calls/s (${IN_FLIGHT} in flight): median (low–high)`,
        'executor CPU µs/write',
      ],
      rows,
    ),
  );
  console.log(
    `${quads} A-B-B-A rounds; ${SERIAL_CALLS} calls one at a time and ${LOADED_CALLS} ${IN_FLIGHT} at a time per block.`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
