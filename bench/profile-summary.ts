/**
 * Top self-time functions of a V8 .cpuprofile (as written by `node --cpu-prof`).
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [TOP]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  percent: number;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Self time per function (summed over every call site), biggest first. */
export function selfTimes(profile: CpuProfile): SelfTime[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const micros = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Sample i lasted from its timestamp to the next one.
  for (let i = 0; i < samples.length; i++) {
    const duration = deltas[i + 1] ?? 0;
    micros.set(samples[i]!, (micros.get(samples[i]!) ?? 0) + duration);
  }
  const total = profile.endTime - profile.startTime;
  const grouped = new Map<string, SelfTime>();
  for (const [id, us] of micros) {
    const frame = byId.get(id)!.callFrame;
    const name = frame.functionName || '(anonymous)';
    const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : '';
    const key = `${name}\u0000${where}`;
    const entry = grouped.get(key) ?? { name, where, ms: 0, percent: 0 };
    entry.ms += us / 1000;
    grouped.set(key, entry);
  }
  const list = [...grouped.values()];
  for (const entry of list) entry.percent = (entry.ms * 1000 * 100) / total;
  return list.sort((a, b) => b.ms - a.ms);
}

/** Self time summed per source file (or per pseudo-frame such as (garbage collector)). */
export function selfTimesByFile(profile: CpuProfile): Array<{ file: string; ms: number; percent: number }> {
  const files = new Map<string, number>();
  for (const entry of selfTimes(profile)) {
    const file = entry.where ? entry.where.replace(/:\d+$/, '') : entry.name;
    files.set(file, (files.get(file) ?? 0) + entry.ms);
  }
  const total = (profile.endTime - profile.startTime) / 1000;
  return [...files].map(([file, ms]) => ({ file, ms, percent: (ms * 100) / total })).sort((a, b) => b.ms - a.ms);
}

/** Which layer a frame belongs to, for the per-layer breakdown. */
export function layerOf(name: string, where: string): string {
  if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') return name;
  if (where === '') {
    if (NATIVE_FS.has(name)) return 'native fs calls (main-thread side)';
    if (NATIVE_NET.has(name)) return 'native socket writes';
    if (name === 'writeBuffer') return 'native writeBuffer (file or socket write)';
    return 'native: other';
  }
  if (where.startsWith('node:internal/webstreams')) return 'web streams (node:internal/webstreams)';
  if (where.startsWith('node:internal/deps/undici')) return 'undici Request/Headers/Response';
  if (where.startsWith('node:internal/fs')) return 'fs/promises (FileHandle etc.)';
  if (where.startsWith('node:internal/crypto')) return 'node:crypto';
  if (
    /^node:(_http|http|net|internal\/(http|stream_base|streams|net))/.test(where) ||
    where.startsWith('node:internal/streams')
  )
    return 'node http / net / node streams';
  if (
    where.startsWith('node:internal/modules') ||
    where.startsWith('node:internal/bootstrap') ||
    where.includes('node_modules/tsx/')
  )
    return 'module loading (start-up, tsx)';
  if (where.startsWith('node:internal/worker') || name === 'makeTransferable' || name === 'JSTransferable')
    return 'node transferables (FileHandle, AbortSignal)';
  if (where.startsWith('node:internal/abort_controller')) return 'AbortController/AbortSignal';
  if (where.startsWith('node:')) return 'node: other internals';
  if (where.includes('node_modules/@hono/node-server/')) return '@hono/node-server (Node <-> Fetch adapter)';
  if (where.includes('node_modules/hono/')) return 'hono (router, context)';
  if (where.includes('node_modules/')) return 'other dependencies';
  return `larder: ${where.replace(/:\d+$/, '')}`;
}

const NATIVE_FS = new Set([
  'openFileHandle',
  'open',
  'close',
  'read',
  'fstat',
  'stat',
  'rename',
  'mkdir',
  'unlink',
  'utimes',
  'access',
  'lstat',
]);
const NATIVE_NET = new Set(['writeUtf8String', 'writeLatin1String', 'writev']);

function shortUrl(url: string): string {
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

export function summarize(file: string, top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const seconds = (profile.endTime - profile.startTime) / 1e6;
  const all = selfTimes(profile);
  const busy = all.filter((e) => e.name !== '(idle)').reduce((sum, e) => sum + e.ms, 0);
  const share = (ms: number) => `${((ms * 100) / busy).toFixed(1).padStart(5)}%`;
  const lines = [
    `${file}: ${seconds.toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s of it busy on the main thread (percentages below are of busy time)`,
    '',
    'top self time by function:',
  ];
  for (const e of all.filter((e) => e.name !== '(idle)').slice(0, top)) {
    lines.push(`  ${share(e.ms)}  ${e.ms.toFixed(0).padStart(7)} ms  ${e.name}  ${e.where}`);
  }
  const layers = new Map<string, number>();
  for (const e of all) {
    if (e.name === '(idle)') continue;
    const layer = layerOf(e.name, e.where);
    layers.set(layer, (layers.get(layer) ?? 0) + e.ms);
  }
  lines.push('', 'self time by layer:');
  for (const [layer, ms] of [...layers].sort((a, b) => b[1] - a[1])) {
    lines.push(`  ${share(ms)}  ${ms.toFixed(0).padStart(7)} ms  ${layer}`);
  }
  return lines.join('\n');
}

/**
 * Prints to stderr the summary of an executor's main-thread profile in `profileDir`
 * (CPU.date.time.PID.0.seq.cpuprofile: thread 0; the others are tsx's loader).
 */
export function printProfile(profileDir: string, pid: number): void {
  const main = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile') && f.includes(`.${pid}.0.`));
  process.stderr.write(
    main === undefined
      ? `no main-thread profile of executor ${pid} in ${profileDir}\n`
      : `\n${summarize(join(profileDir, main), 30)}\n`,
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    console.error('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [TOP]');
    process.exit(2);
  }
  console.log(summarize(file, top ? Number(top) : 25));
}
