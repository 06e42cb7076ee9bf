/**
 * Side-by-side figures that survive a busy machine: two or more kinds of work (two kinds of call, or the same calls
 * against two servers) run in short blocks in A-B-B-A order (A-B-C-C-B-A for three), over and over. Whatever drifts
 * while the bench runs (other processes, the disk, the JIT, garbage the previous block left) then falls on every kind
 * alike; measured one whole pass after the other, that drift decided the ratio. Each kind's figures are its totals
 * over all its blocks, and each A-B-B-A quad also gives a ratio of its own: their spread is the noise the headline
 * ratio carries. Used by bench/asset.ts and bench/grpc.ts.
 */
import { performance } from 'node:perf_hooks';
import { cpuNanoseconds } from './proc.ts';

/** One kind's work added up over the blocks it ran. */
export interface Tally {
  seconds: number;
  calls: number;
  /** The server's CPU (all its threads, from schedstat), in ns. */
  cpuNs: number;
  /** The bench process's own CPU (the client's encoding and decoding), in µs. */
  clientCpuUs: number;
  /** Each call's latency in ms. */
  latencies: number[];
}

export function emptyTally(): Tally {
  return { seconds: 0, calls: 0, cpuNs: 0, clientCpuUs: 0, latencies: [] };
}

export function addTally(into: Tally, from: Tally): void {
  into.seconds += from.seconds;
  into.calls += from.calls;
  into.cpuNs += from.cpuNs;
  into.clientCpuUs += from.clientCpuUs;
  into.latencies.push(...from.latencies);
}

export function callsPerSecond(tally: Tally): number {
  return tally.calls / tally.seconds;
}

/** Runs `work` (which makes `calls` calls) and adds its wall time, the server's (`pid`) CPU and the bench's to `tally`. */
export async function measure(pid: number, tally: Tally, calls: number, work: () => Promise<unknown>): Promise<void> {
  const cpuBefore = cpuNanoseconds(pid);
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  await work();
  tally.seconds += (performance.now() - started) / 1000;
  tally.cpuNs += cpuNanoseconds(pid) - cpuBefore;
  const client = process.cpuUsage(clientBefore);
  tally.clientCpuUs += client.user + client.system;
  tally.calls += calls;
}

/** Every kind's totals, and each quad's tallies (one A-B-B-A round of blocks). */
export interface Interleaved<K extends string> {
  totals: Record<K, Tally>;
  quads: Record<K, Tally>[];
}

/**
 * `quads` rounds of blocks, each round the kinds in order and then in reverse (A-B-B-A). `runBlock` runs one block of
 * `kind` and adds it to `tally`; `block` counts the halves of quads (0, 1 in the first quad, 2, 3 in the next…), so a
 * caller can give each half different items.
 */
export async function interleave<K extends string>(
  kinds: readonly K[],
  quads: number,
  runBlock: (kind: K, block: number, tally: Tally) => Promise<void>,
): Promise<Interleaved<K>> {
  const tallies = () => Object.fromEntries(kinds.map((k) => [k, emptyTally()])) as Record<K, Tally>;
  const result: Interleaved<K> = { totals: tallies(), quads: [] };
  for (let q = 0; q < quads; q++) {
    const quad = tallies();
    const halves = [kinds, [...kinds].reverse()];
    for (const [half, order] of halves.entries()) {
      for (const kind of order) await runBlock(kind, 2 * q + half, quad[kind]);
    }
    for (const kind of kinds) addTally(result.totals[kind], quad[kind]);
    result.quads.push(quad);
  }
  return result;
}

/** Low, median and high of a set of per-quad figures. */
export interface Spread {
  low: number;
  median: number;
  high: number;
  count: number;
}

export function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  return { low: sorted[0]!, median: percentile(sorted, 0.5), high: sorted.at(-1)!, count: sorted.length };
}

/** `median (low–high) of N`, each to two decimals. */
export function formatSpread(s: Spread): string {
  return `${s.median.toFixed(2)} (${s.low.toFixed(2)}–${s.high.toFixed(2)}) of ${s.count}`;
}

/** The `p` percentile (nearest rank) of values in any order: `percentile` of a sorted copy. */
export function percentileOf(values: readonly number[], p: number): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    p,
  );
}

/** The `p` percentile (nearest rank) of values sorted in ascending order. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;
}
