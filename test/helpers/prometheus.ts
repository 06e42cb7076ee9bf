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
