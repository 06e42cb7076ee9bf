/**
 * Reads a Prometheus text exposition (what `/metrics` serves) back into numbers, so tests can assert how far a
 * counter or histogram moved between two scrapes. Only reading: larder never writes the format itself.
 */
export type Samples = Map<string, number>;

/** `name{a="1",b="2"}` → value, with labels sorted so lookups need not know the exposition's order. */
export function parseExposition(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => [k!, v!] as const);
    samples.set(sampleKey(match[1]!, Object.fromEntries(labels)), Number(match[3]));
  }
  return samples;
}

export function sampleKey(name: string, labels: Record<string, string> = {}): string {
  const sorted = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return sorted.length === 0 ? name : `${name}{${sorted.map(([k, v]) => `${k}="${v}"`).join(',')}}`;
}

/** The sample's value, 0 when absent (a counter that has not moved yet has no line). */
export function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  return samples.get(sampleKey(name, labels)) ?? 0;
}

/** How far each sample moved from `before` to `after`. */
export function delta(before: Samples, after: Samples): (name: string, labels?: Record<string, string>) => number {
  return (name, labels = {}) => sample(after, name, labels) - sample(before, name, labels);
}

export async function scrape(url: string, headers: Record<string, string> = {}): Promise<Samples> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return parseExposition(await res.text());
}

/** larder's latency buckets (seconds), as /metrics has listed them since metrics began: a dashboard's `le` values. */
export const LATENCY_BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** One label set of a histogram, as exposed: its buckets' `le` and cumulative count, in order, its sum and count. */
export interface HistogramSeriesText {
  labels: string;
  buckets: Array<[le: string, count: number]>;
  sum: number;
  count: number;
}

/**
 * A histogram's block of an exposition, checked line by line for the shape prom-client writes: `# HELP`, `# TYPE
 * name histogram`, then per label set its `_bucket` lines (`le` first), `_sum` and `_count`, together and in that
 * order. Throws on any other shape; answers the series in the order they appear.
 */
export function histogramSeries(text: string, name: string): { help: string; series: HistogramSeriesText[] } {
  const lines = text.split('\n');
  const at = lines.indexOf(lines.find((line) => line.startsWith(`# HELP ${name} `)) ?? '');
  if (at < 0) throw new Error(`no # HELP ${name}`);
  if (lines[at + 1] !== `# TYPE ${name} histogram`) throw new Error(`${name}: not typed histogram: ${lines[at + 1]}`);
  const series: HistogramSeriesText[] = [];
  // Each line is the next bucket of the open series, a new series' first bucket, or the open series' _sum or _count.
  let open: HistogramSeriesText | null = null;
  for (const line of lines.slice(at + 2)) {
    if (line === '' || line.startsWith('#')) break;
    const bucket = new RegExp(`^${name}_bucket\\{le="([^"]+)",(.*)\\} (\\S+)$`).exec(line);
    const total = new RegExp(`^${name}_(sum|count)\\{(.*)\\} (\\S+)$`).exec(line);
    const [labels, value] = bucket !== null ? [bucket[2]!, Number(bucket[3])] : [total?.[2], Number(total?.[3])];
    if (bucket !== null && open === null) open = { labels: bucket[2]!, buckets: [], sum: Number.NaN, count: 0 };
    if (open === null || labels !== open.labels) throw new Error(`${name}: unexpected line ${line}`);
    if (bucket !== null && Number.isNaN(open.sum)) open.buckets.push([bucket[1]!, value]);
    else if (total?.[1] === 'sum' && Number.isNaN(open.sum)) open.sum = value;
    else if (total?.[1] === 'count' && !Number.isNaN(open.sum)) {
      series.push({ ...open, count: value });
      open = null;
    } else throw new Error(`${name}: unexpected line ${line}`);
  }
  if (open !== null) throw new Error(`${name}{${open.labels}}: no _sum and _count`);
  return { help: lines[at]!.slice(`# HELP ${name} `.length), series };
}

/**
 * Checks a histogram between two scrapes of one process: every series well formed (the given bounds then `+Inf`,
 * cumulative counts that never fall, `+Inf` equal to `_count`, a finite sum of non-negative observations), and the
 * earlier scrape's series still there, first and in the same order (series are listed as first observed), none
 * having lost an observation. Throws, naming the series, on any failure; answers the later scrape's series.
 */
export function checkHistogramGrowth(
  before: string,
  after: string,
  name: string,
  bounds: readonly number[],
): HistogramSeriesText[] {
  const [earlier, later] = [histogramSeries(before, name), histogramSeries(after, name)];
  const les = [...bounds.map(String), '+Inf'].join(' ');
  for (const s of [...earlier.series, ...later.series]) {
    const what = `${name}{${s.labels}}`;
    if (s.buckets.map(([le]) => le).join(' ') !== les) throw new Error(`${what}: buckets ${JSON.stringify(s.buckets)}`);
    if (s.buckets.some(([, n], i) => i > 0 && n < s.buckets[i - 1]![1])) throw new Error(`${what}: not cumulative`);
    if (s.buckets.at(-1)![1] !== s.count) throw new Error(`${what}: +Inf ${s.buckets.at(-1)![1]} ≠ count ${s.count}`);
    if (!Number.isFinite(s.sum) || s.sum < 0 || s.count < 1) throw new Error(`${what}: sum ${s.sum}, count ${s.count}`);
  }
  earlier.series.forEach((s, i) => {
    const now = later.series[i];
    if (now?.labels !== s.labels) throw new Error(`${name}{${s.labels}}: moved from place ${i} (now ${now?.labels})`);
    if (now.buckets.some(([, n], j) => n < s.buckets[j]![1]) || now.sum < s.sum)
      throw new Error(`${name}{${s.labels}}: went down`);
  });
  if (later.help !== earlier.help) throw new Error(`${name}: help changed`);
  return later.series;
}
