/**
 * The import graph of larder's sources, read from the files themselves: every `import … from`, `import type`,
 * `export … from`, bare `import '…'` and `import('…')`, as TypeScript's own scanner finds them (so an import
 * written over several lines counts, and one inside a comment or a string does not). Type-only imports are
 * edges like any other: a type cycle still ties two files together, and a type from a higher layer is a
 * dependency on it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import ts from 'typescript';

export interface ImportGraph {
  /** Repository-relative path → the repository-relative files it imports (relative specifiers, resolved). */
  readonly files: ReadonlyMap<string, readonly string[]>;
  /** Repository-relative path → what it imports by name: `node:fs`, `hono`, `@grpc/grpc-js/…`. */
  readonly modules: ReadonlyMap<string, readonly string[]>;
}

const SOURCE = /\.(ts|mts|mjs|js)$/;

/** Reads every source file under `folders` (relative to `root`); node_modules is never entered. */
export function readImportGraph(root: string, folders: readonly string[]): ImportGraph {
  const files = new Map<string, string[]>();
  const modules = new Map<string, string[]>();
  for (const path of folders.flatMap((folder) => sourcesUnder(root, folder))) {
    const specifiers = ts.preProcessFile(readFileSync(join(root, path), 'utf8'), true, true).importedFiles;
    const local: string[] = [];
    const named: string[] = [];
    for (const { fileName } of specifiers) {
      if (fileName.startsWith('.')) local.push(posix.normalize(posix.join(posix.dirname(path), fileName)));
      else named.push(fileName);
    }
    files.set(path, [...new Set(local)]);
    modules.set(path, [...new Set(named)]);
  }
  return { files, modules };
}

function sourcesUnder(root: string, folder: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = posix.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(path);
      } else if (SOURCE.test(entry.name) && !entry.name.endsWith('.d.ts')) found.push(path);
    }
  };
  walk(folder);
  return found;
}

export interface Cycle {
  /** Every node tied into the cycle's strongly connected group, sorted. */
  members: string[];
  /** One shortest cycle through the group's first member, as the path that closes it: `a → b → a`. */
  path: string[];
}

/**
 * The strongly connected groups of `edges` (Tarjan's algorithm), each with one cycle through it. Empty when the
 * graph is acyclic. Iterative, so a long chain cannot overflow the stack.
 */
export function findCycles(edges: ReadonlyMap<string, readonly string[]>): Cycle[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  let next = 0;
  for (const start of edges.keys()) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; children: readonly string[]; at: number }> = [];
    const enter = (node: string) => {
      index.set(node, next);
      low.set(node, next++);
      stack.push(node);
      onStack.add(node);
      work.push({ node, children: edges.get(node) ?? [], at: 0 });
    };
    enter(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      if (frame.at < frame.children.length) {
        const child = frame.children[frame.at++]!;
        if (!index.has(child)) enter(child);
        else if (onStack.has(child)) low.set(frame.node, Math.min(low.get(frame.node)!, index.get(child)!));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) !== index.get(frame.node)) continue;
      const group: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        group.push(member);
      } while (member !== frame.node);
      if (group.length > 1 || (edges.get(frame.node) ?? []).includes(frame.node)) groups.push(group);
    }
  }
  return groups.map((group) => ({ members: group.sort(), path: cycleWithin(edges, new Set(group)) }));
}

/** A shortest cycle through the group's first member (breadth-first, staying inside the group). */
function cycleWithin(edges: ReadonlyMap<string, readonly string[]>, group: ReadonlySet<string>): string[] {
  const start = [...group].sort()[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!;
    for (const child of edges.get(node) ?? []) {
      if (!group.has(child)) continue;
      if (child === start) {
        const path = [start];
        for (let at: string | undefined = node; at !== start && at !== undefined; at = cameFrom.get(at))
          path.splice(1, 0, at);
        return [...path, start];
      }
      if (!cameFrom.has(child)) {
        cameFrom.set(child, node);
        queue.push(child);
      }
    }
  }
  return [...group];
}
