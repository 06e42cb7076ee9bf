/**
 * The input root's symlinks may not point out of it. Staging never follows a symlink (every path it creates
 * has only directories it made above it), so this is policy, checked before anything is created.
 */
import { join } from 'node:path';
import { LarderError } from '../../shared/errors.ts';
import { formatDigest } from '../../shared/digest.ts';
import type { Checked, InputTree } from './input-tree.ts';

/** Symlinks followed while resolving one input symlink, as the kernel's own limit (ELOOP). */
const MAX_SYMLINK_HOPS = 40;

/**
 * Refuses absolute targets and targets that leave the input root. Targets are resolved the way the kernel
 * will, following the tree's own symlinks: "x/up -> .." then "x/y -> up/.." escapes though neither looks like
 * it does. A Directory shared by digest is checked at every place it appears, since where a target leads
 * depends on what surrounds it; subtrees without any symlink are skipped, and the tree's size was bounded
 * before (input-tree.ts), so the walk is bounded by what staging would do anyway.
 */
export function checkSymlinks(tree: InputTree): void {
  const { directories } = tree;
  const hasSymlinks = symlinkHolders(tree);
  const walk = (stack: Checked[], path: string) => {
    const here = stack[stack.length - 1]!;
    for (const [name, entry] of here.entries) {
      const at = join(path, name);
      if (entry.kind === 'symlink') {
        if (entry.target!.startsWith('/')) {
          throw new LarderError(
            'invalid_argument',
            `input symlink "${at}" -> "${entry.target}" is absolute; only relative targets are allowed`,
          );
        }
        if (resolve(directories, stack, entry.target!, 0) === 'escapes') {
          throw new LarderError(
            'invalid_argument',
            `input symlink "${at}" -> "${entry.target}" points outside the input root`,
          );
        }
      } else if (entry.kind === 'directory' && hasSymlinks.has(formatDigest(entry.digest!))) {
        walk([...stack, directories.get(formatDigest(entry.digest!))!], at);
      }
    }
  };
  if (hasSymlinks.has(formatDigest(tree.root))) walk([directories.get(formatDigest(tree.root))!], '');
}

/** The Directories that hold a symlink somewhere below them, themselves included. */
function symlinkHolders(tree: InputTree): Set<string> {
  const memo = new Map<string, boolean>();
  const holds = (key: string): boolean => {
    const known = memo.get(key);
    if (known !== undefined) return known;
    let found = false;
    for (const entry of tree.directories.get(key)!.entries.values()) {
      if (entry.kind === 'symlink' || (entry.kind === 'directory' && holds(formatDigest(entry.digest!)))) found = true;
    }
    memo.set(key, found);
    return found;
  };
  holds(formatDigest(tree.root));
  return new Set([...memo].filter(([, found]) => found).map(([key]) => key));
}

/**
 * Where `target` leads from the directory at the top of `start`: the directory stack it reaches, 'escapes' when
 * it climbs above the root, or 'inside' when it stops at a file or dangles or loops (those fail in the action;
 * they do not escape).
 */
function resolve(
  directories: Map<string, Checked>,
  start: Checked[],
  target: string,
  hops: number,
): Checked[] | 'escapes' | 'inside' {
  if (target.startsWith('/')) return 'escapes';
  const stack = [...start];
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 1) return 'escapes';
      stack.pop();
      continue;
    }
    const entry = stack[stack.length - 1]!.entries.get(part);
    if (entry === undefined || entry.kind === 'file') return 'inside'; // ENOENT / ENOTDIR from here on
    if (entry.kind === 'directory') {
      stack.push(directories.get(formatDigest(entry.digest!))!);
      continue;
    }
    if (hops >= MAX_SYMLINK_HOPS) return 'inside'; // ELOOP
    const through = resolve(directories, stack, entry.target!, hops + 1);
    if (!Array.isArray(through)) return through;
    stack.splice(0, stack.length, ...through);
  }
  return stack;
}
