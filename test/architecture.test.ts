/**
 * Layers that point one way, checked on the import graph the sources spell out (test/helpers/import-graph.ts):
 * - no file cycle, type-only imports included;
 * - no cycle among executor/'s folders: entries (executor/*.ts) → frontend (execution/, services/, bytestream/)
 *   and workers (worker/) → scheduler/ → runner/, all of them → grpc/ → reapi/ → shared/;
 * - executor/reapi/, what every part of execution shares, imports nothing else of executor/;
 * - shared/ and edge/ stay runtime-neutral: never executor/ or cli/, never an executor-only package, and only
 *   `node:` built-ins that Deno and Bun provide (asked of each). The Node rim (edge/node*.ts) serves the app on
 *   Node and may use Node's own adapter; nothing else in shared/ or edge/ imports it.
 * Each failure names the imports that break the rule.
 */
import { spawnSync } from 'node:child_process';
import { isBuiltin } from 'node:module';
import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCycles, readImportGraph } from './helpers/import-graph.ts';
import { bunPath, denoPath, REPO_ROOT, requireTool } from './helpers/tools.ts';

const graph = readImportGraph(REPO_ROOT, ['edge', 'shared', 'executor', 'cli']);

/** The low module: platform matching, missing blobs, digests, statuses: what every part of execution needs. */
const LOW_MODULE = 'executor/reapi';
/** The edge's Node-only rim: edge/node.ts and the files only it loads. The Deno entries never reach it. */
const NODE_RIM = /^edge\/node[^/]*\.ts$/;
/** Node-only dependencies of executor/: gRPC, Redis, the native zstd binding. */
const EXECUTOR_ONLY_PACKAGES = new Set(['@grpc/grpc-js', 'ioredis', 'zstd-napi']);
/** Hono's Node adapter: executor/ and the Node rim only. */
const NODE_ADAPTER = '@hono/node-server';

const runtimeNeutral = [...graph.files.keys()].filter((path) => /^(shared|edge)\//.test(path));

describe('the import graph', () => {
  it('has no file cycle', () => {
    expect(findCycles(graph.files).map((cycle) => cycle.path.join(' → '))).toEqual([]);
  });

  it("has no cycle among executor/'s folders", () => {
    const folders = new Map<string, string[]>();
    const because = new Map<string, string>();
    for (const [from, targets] of graph.files) {
      if (!from.startsWith('executor/')) continue;
      for (const to of targets) {
        const [a, b] = [posix.dirname(from), posix.dirname(to)];
        if (a === b || !to.startsWith('executor/')) continue;
        folders.set(a, [...new Set([...(folders.get(a) ?? []), b])]);
        if (!because.has(`${a} ${b}`)) because.set(`${a} ${b}`, `${from} imports ${to}`);
      }
    }
    const cycles = findCycles(folders).map(({ members, path }) => {
      const steps = path.slice(1).map((to, i) => `${path[i]} → ${to} (${because.get(`${path[i]} ${to}`)})`);
      return `${steps.join('; ')}${members.length > 2 ? ` [one of the cycles tying ${members.join(', ')}]` : ''}`;
    });
    expect(cycles).toEqual([]);
  });

  it(`keeps ${LOW_MODULE}/ low: it imports nothing else of executor/`, () => {
    const low = [...graph.files.keys()].filter((path) => posix.dirname(path) === LOW_MODULE);
    expect(low.length).toBeGreaterThan(0);
    const upward = low.flatMap((from) =>
      (graph.files.get(from) ?? [])
        .filter((to) => to.startsWith('executor/') && posix.dirname(to) !== LOW_MODULE)
        .map((to) => `${from} imports ${to}`),
    );
    expect(upward).toEqual([]);
  });
});

describe('shared/ and edge/', () => {
  it('never import executor/ or cli/, nor the Node rim from outside it', () => {
    const wrong = runtimeNeutral.flatMap((from) =>
      (graph.files.get(from) ?? [])
        .filter((to) => /^(executor|cli)\//.test(to) || (NODE_RIM.test(to) && !NODE_RIM.test(from)))
        .map((to) => `${from} imports ${to}`),
    );
    expect(wrong).toEqual([]);
  });

  it("never load an executor-only package, and Node's adapter only in the Node rim", () => {
    const wrong = runtimeNeutral.flatMap((from) =>
      (graph.modules.get(from) ?? [])
        .filter((name) => {
          const pkg = packageOf(name);
          return EXECUTOR_ONLY_PACKAGES.has(pkg) || (pkg === NODE_ADAPTER && !NODE_RIM.test(from));
        })
        .map((name) => `${from} imports ${name}`),
    );
    expect(wrong).toEqual([]);
  });

  // The runtime entries may use what their own runtime has; everything else must load on both other runtimes.
  for (const [runtime, path, install, run] of [
    ['Deno', denoPath(), 'npm ci installs it', ['eval', '--no-config']],
    ['Bun', bunPath(), 'npm ci installs it from @oven/bun-linux-x64', ['--eval']],
  ] as const)
    it.runIf(requireTool(runtime.toLowerCase(), path, install))(
      `use only the Node built-ins ${runtime} provides`,
      () => {
        const importers = new Map<string, string[]>();
        for (const from of runtimeNeutral.filter((path) => !NODE_RIM.test(path)))
          for (const name of graph.modules.get(from) ?? [])
            if (isBuiltin(name)) importers.set(name, [...(importers.get(name) ?? []), from]);
        expect(importers.size).toBeGreaterThan(0);
        // One process tries them all and prints the ones it cannot load.
        const probe = `const names = ${JSON.stringify([...importers.keys()])};
        const failed = [];
        for (const name of names) await import(name).catch(() => failed.push(name));
        console.log(JSON.stringify(failed));`;
        const result = spawnSync(path!, [...run, probe], { encoding: 'utf8', timeout: 60_000 });
        expect(result.status, result.stderr).toBe(0);
        const missing = JSON.parse(result.stdout) as string[];
        expect(missing.map((name) => `${name}, imported by ${importers.get(name)!.join(', ')}`)).toEqual([]);
      },
    );
});

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}
