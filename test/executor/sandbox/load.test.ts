// Load that must keep holding with the sandbox on: 5,000 concurrent Executes of distinct trivial actions through
// a real executor process all complete, its memory stays bounded, and the cache keeps answering meanwhile.
import { create, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ActionSchema,
  CommandSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { mapLimit } from '../../../shared/map-limit.ts';
import { peakRssMiB } from '../../helpers/proc.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { type Clients, clientsFor, digestOf, type ExecutorProcess, startExecutorProcess } from '../helpers.ts';

const ACTIONS = 5_000;
/** Measured here: about 300 MiB at the peak; the bound leaves room for a slower machine's deeper queue. */
const PEAK_RSS_BOUND_MIB = 700;

describe('5,000 concurrent Executes through the sandbox', () => {
  let executor: ExecutorProcess;
  let clients: Clients;

  beforeAll(async () => {
    executor = await startExecutorProcess(['--store', 'memory:512MiB', '--log-level', 'error']);
    clients = clientsFor(`127.0.0.1:${executor.port}`, undefined, { 'grpc.max_concurrent_streams': 10_000 });
  });
  afterAll(async () => {
    clients?.close();
    await executor?.stop();
  });

  it('all complete, the executor stays within its memory bound, FindMissingBlobs answers meanwhile', async () => {
    const fx = new ActionFixture(clients);
    const [commandDigest] = await fx.upload(
      toBinary(CommandSchema, create(CommandSchema, { arguments: ['/bin/true'] })),
    );
    const inputRoot = await fx.directory({});
    const actions = Array.from({ length: ACTIONS }, (_, i) =>
      toBinary(
        ActionSchema,
        create(ActionSchema, {
          commandDigest,
          inputRootDigest: inputRoot,
          salt: Buffer.from(`load-${i}-${Date.now()}`),
        }),
      ),
    );
    const digests = (await mapLimit(chunks(actions, 500), 2, (chunk) => fx.upload(...chunk))).flat();

    let done = false;
    const probes: number[] = [];
    const probe = (async () => {
      const missing = Array.from({ length: 100 }, (_, i) => digestOf(`probe ${i}`));
      for (let round = 0; !done && round < 100_000; round++) {
        const started = performance.now();
        await clients.cas.findMissingBlobs({
          blobDigests: missing.map((d) => ({ hash: d.hash, sizeBytes: BigInt(d.sizeBytes) })),
        });
        probes.push(performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const results = await Promise.all(digests.map((digest) => fx.execute(digest)));
    done = true;
    await probe;

    const failed = results.filter((r) => (r.response.status?.code ?? 0) !== 0 || r.response.result?.exitCode !== 0);
    expect(failed.map((r) => r.response.status?.message).slice(0, 3)).toEqual([]);
    expect(results).toHaveLength(ACTIONS);
    expect(peakRssMiB(executor.pid)).toBeLessThan(PEAK_RSS_BOUND_MIB);
    probes.sort((a, b) => a - b);
    const p50 = probes[Math.floor(probes.length / 2)]!;
    console.log(
      `5,000 Executes: ${probes.length} probes, FindMissingBlobs p50 ${p50.toFixed(1)} ms; executor peak ${peakRssMiB(executor.pid).toFixed(0)} MiB`,
    );
    expect(probes.length).toBeGreaterThan(10);
    expect(p50).toBeLessThan(100);
  }, 600_000);
});

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
