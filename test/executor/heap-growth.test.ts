/**
 * A real `larder executor` process taking large ByteStream Writes does not fall into back-to-back full garbage
 * collections (executor/startup/heap-growth.ts): V8 would otherwise set its old-generation limit barely above what is
 * live, and every young collection brought on by node:http2's short-lived read buffers would start a mark-compact.
 * Counted from the executor's own /metrics (prom-client's nodejs_gc_duration_seconds, by kind). And the growth factor
 * chosen for a live size gives the room it promises, no more.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { growingPercentFor, HEAP_ROOM_BYTES, LARGE_HEAP_BYTES } from '../../executor/startup/heap-growth.ts';
import { sample, scrape } from '../helpers/prometheus.ts';
import { clientsFor, type ExecutorProcess, reachableTempDir, startExecutorProcess, writeRequests } from './helpers.ts';

const MiB = 1024 * 1024;
const BLOB_BYTES = 64 * MiB;
/** Writes before counting: past start-up, whose own collections are not the point. */
const WARM_WRITES = 2;
const COUNTED_WRITES = 12;

let executor: ExecutorProcess;
let metricsUrl: string;
/** Holds the 900 MiB the Writes store: removed afterwards. */
const dir = reachableTempDir('larder-heap-growth-');

beforeAll(async () => {
  executor = await startExecutorProcess([
    '--store',
    `disk:${dir}/store`,
    '--metrics-listen',
    '127.0.0.1:0',
    '--workers',
    '0',
  ]);
  // Printed just after the listening line, which startExecutorProcess waited for.
  for (let i = 0; i < 100 && !/metrics on /.test(executor.output()); i++)
    await new Promise((resolve) => setTimeout(resolve, 100));
  const match = /larder executor metrics on (\S+)/.exec(executor.output());
  if (match === null) throw new Error(`no metrics line:\n${executor.output()}`);
  metricsUrl = match[1]!;
}, 60_000);
afterAll(async () => {
  await executor?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('takes a dozen 64 MiB Writes with at most a few full collections', async () => {
  const { bytestream } = clientsFor(executor.url.replace(/^grpc:\/\//, ''));
  const blob = randomBytes(BLOB_BYTES);
  const write = async () => {
    blob.write(randomUUID(), 0, 'latin1'); // a new blob each time: a stored one would be answered at once
    const hash = createHash('sha256').update(blob).digest('hex');
    const name = `uploads/${randomUUID()}/blobs/${hash}/${BLOB_BYTES}`;
    expect((await bytestream.write(writeRequests(name, blob))).committedSize).toBe(BigInt(BLOB_BYTES));
  };
  for (let i = 0; i < WARM_WRITES; i++) await write();
  const majors = async () => sample(await scrape(metricsUrl), 'nodejs_gc_duration_seconds_count', { kind: 'major' });
  const before = await majors();
  for (let i = 0; i < COUNTED_WRITES; i++) await write();
  // Without the steady growth factor: 1–3 per Write once V8 has judged the program idle (12–40 here).
  expect(await majors()).toBeLessThanOrEqual(before + 3);
}, 120_000);

it('gives a heap below LARGE_HEAP_BYTES the room, within a percent of it, and leaves larger ones to V8', () => {
  for (const live of [1, 16, 25, 100, 300, 639].map((mib) => mib * MiB)) {
    const room = (live * growingPercentFor(live)) / 100;
    expect(room).toBeGreaterThanOrEqual(HEAP_ROOM_BYTES);
    expect(room).toBeLessThanOrEqual(HEAP_ROOM_BYTES + live / 100);
  }
  expect(growingPercentFor(LARGE_HEAP_BYTES)).toBe(0); // 0: V8's own factor
  expect(growingPercentFor(2 * LARGE_HEAP_BYTES)).toBe(0);
});
