/**
 * Finding the real tools tests drive. In CI (CI=true) a missing tool is a failure, never a skip; on a
 * developer's machine the suite that needs it is skipped with a message saying what to install.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** The first of `candidates` that exists (paths are tried as given, names on PATH). */
export function findTool(...candidates: string[]): string | undefined {
  for (const candidate of candidates) {
    if (candidate.includes('/')) {
      if (existsSync(candidate)) return candidate;
      continue;
    }
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      const path = join(dir, candidate);
      if (existsSync(path)) return path;
    }
  }
  return undefined;
}

/** Deno from the npm package, else from PATH. */
export function denoPath(): string | undefined {
  return findTool(join(REPO_ROOT, 'node_modules/@deno/linux-x64-glibc/deno'), 'deno');
}

/** Bun from the npm package (@oven/bun-linux-x64, which npm ci installs), else from PATH. */
export function bunPath(): string | undefined {
  return findTool(join(REPO_ROOT, 'node_modules/@oven/bun-linux-x64/bin/bun'), 'bun');
}

/**
 * Whether a suite needing `tool` should run. Throws in CI when the tool is missing, so the run fails loudly.
 */
export function requireTool(name: string, path: string | undefined, install: string): boolean {
  if (path !== undefined) return true;
  const message = `${name} not found (${install})`;
  if (IN_CI) throw new Error(`CI=true and ${message}`);
  console.warn(`skipping: ${message}`);
  return false;
}

/**
 * Whether a suite that mounts a tmpfs of its own in a user and mount namespace (`unshare -rm`, no privileges needed)
 * should run: some container runtimes forbid those namespaces. Throws in CI when they are missing (requireTool).
 */
export function requireUnshare(): boolean {
  const works = findTool('unshare') !== undefined && spawnSync('unshare', ['-rm', 'true']).status === 0;
  return requireTool(
    'unshare -rm (user namespaces)',
    works ? 'unshare' : undefined,
    'apt-get install util-linux; allow unprivileged user namespaces',
  );
}

/** Root: mounting a tmpfs, chowning to other users, running actions as other users. */
export const IS_ROOT = process.getuid?.() === 0;

/**
 * Whether a suite that needs root should run: as root, yes; in CI, yes too, and its `beforeAll(() =>
 * failUnlessRoot(why))` then fails every test of it, so CI never skips it silently; elsewhere it is skipped with a
 * message. (A throw here instead would fail the whole file, the tests that need no root included.)
 */
export function needsRoot(why: string): boolean {
  if (IS_ROOT || IN_CI) return true;
  console.warn(`skipping: not root (${why})`);
  return false;
}

/** Fails the suite (call it in beforeAll, or first in a test) when not root, saying why root is needed. */
export function failUnlessRoot(why: string): void {
  if (!IS_ROOT) throw new Error(`CI=true but not root, and ${why}`);
}
