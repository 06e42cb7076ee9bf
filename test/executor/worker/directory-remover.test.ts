// The thread that deletes finished actions' directories: whole trees, read-only parts included, in one request each.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DirectoryRemover } from '../../../executor/worker/directory-remover.ts';

const dir = mkdtempSync(join(tmpdir(), 'larder-remover-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('DirectoryRemover', () => {
  it('deletes a tree with read-only folders and a symlink out of it, leaving what the link points at', async () => {
    const remover = new DirectoryRemover();
    const outside = join(dir, 'outside.txt');
    writeFileSync(outside, 'keep me');
    const tree = join(dir, 'action');
    mkdirSync(join(tree, 'root', 'a', 'b'), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(tree, 'root', 'a', `f${i}`), 'x');
    writeFileSync(join(tree, 'root', 'a', 'b', 'ro'), 'x', { mode: 0o444 });
    symlinkSync(outside, join(tree, 'root', 'link'));
    chmodSync(join(tree, 'root', 'a', 'b'), 0o555);
    await remover.remove(tree);
    expect(existsSync(tree)).toBe(false);
    expect(existsSync(outside)).toBe(true);
    await remover.close();
  });

  it('resolves for a path that is not there, and several removals at once each resolve', async () => {
    const remover = new DirectoryRemover();
    await remover.remove(join(dir, 'never-made'));
    const trees = Array.from({ length: 10 }, (_, i) => join(dir, `many-${i}`));
    for (const tree of trees) mkdirSync(join(tree, 'x'), { recursive: true });
    await Promise.all(trees.map((tree) => remover.remove(tree)));
    expect(trees.filter(existsSync)).toEqual([]);
    await remover.close();
  });

  it('rejects with the reason when a tree cannot be deleted, and goes on with the next', async () => {
    const remover = new DirectoryRemover();
    // A name longer than NAME_MAX: the kernel refuses to look it up, whoever asks.
    await expect(remover.remove(join(dir, 'n'.repeat(300)))).rejects.toThrow(/ENAMETOOLONG/);
    const tree = join(dir, 'after-failure');
    mkdirSync(tree);
    await remover.remove(tree);
    expect(existsSync(tree)).toBe(false);
    await remover.close();
  });

  it('refuses work once closed', async () => {
    const remover = new DirectoryRemover();
    await remover.close();
    await expect(remover.remove(join(dir, 'late'))).rejects.toThrow(/closed/);
  });
});
