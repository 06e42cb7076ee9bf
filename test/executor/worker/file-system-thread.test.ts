// The file-system thread: whole trees deleted, read-only parts included, and staging's folders, symlinks and links
// made in batches, one request each.
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileSystemThread, throwIfStopped } from '../../../executor/worker/file-system-thread.ts';

/** Deletes a tree with one `remove` op, rejecting with its failure (how action-folders.ts retires a folder). */
async function removeTree(thread: FileSystemThread, path: string): Promise<void> {
  throwIfStopped(await thread.apply([{ op: 'remove', path }]));
}

const dir = mkdtempSync(join(tmpdir(), 'larder-remover-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('FileSystemThread', () => {
  it('deletes a tree with read-only folders and a symlink out of it, leaving what the link points at', async () => {
    const remover = new FileSystemThread();
    const outside = join(dir, 'outside.txt');
    writeFileSync(outside, 'keep me');
    const tree = join(dir, 'action');
    mkdirSync(join(tree, 'root', 'a', 'b'), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(tree, 'root', 'a', `f${i}`), 'x');
    writeFileSync(join(tree, 'root', 'a', 'b', 'ro'), 'x', { mode: 0o444 });
    symlinkSync(outside, join(tree, 'root', 'link'));
    chmodSync(join(tree, 'root', 'a', 'b'), 0o555);
    await removeTree(remover, tree);
    expect(existsSync(tree)).toBe(false);
    expect(existsSync(outside)).toBe(true);
    await remover.close();
  });

  it('resolves for a path that is not there, and several removals at once each resolve', async () => {
    const remover = new FileSystemThread();
    await removeTree(remover, join(dir, 'never-made'));
    const trees = Array.from({ length: 10 }, (_, i) => join(dir, `many-${i}`));
    for (const tree of trees) mkdirSync(join(tree, 'x'), { recursive: true });
    await Promise.all(trees.map((tree) => removeTree(remover, tree)));
    expect(trees.filter(existsSync)).toEqual([]);
    await remover.close();
  });

  it('rejects with the reason when a tree cannot be deleted, and goes on with the next', async () => {
    const remover = new FileSystemThread();
    // A name longer than NAME_MAX: the kernel refuses to look it up, whoever asks.
    await expect(removeTree(remover, join(dir, 'n'.repeat(300)))).rejects.toThrow(/ENAMETOOLONG/);
    const tree = join(dir, 'after-failure');
    mkdirSync(tree);
    await removeTree(remover, tree);
    expect(existsSync(tree)).toBe(false);
    await remover.close();
  });

  it('makes folders, symlinks and links in order; a failed link is reported and the rest go on', async () => {
    const thread = new FileSystemThread();
    const source = join(dir, 'source.txt');
    writeFileSync(source, 'linked');
    const root = join(dir, 'staged');
    mkdirSync(root);
    const applied = await thread.apply([
      { op: 'mkdir', path: join(root, 'sub') },
      { op: 'link', from: source, path: join(root, 'sub', 'a') },
      { op: 'link', from: join(dir, 'not-there'), path: join(root, 'sub', 'b') },
      { op: 'symlink', target: 'a', path: join(root, 'sub', 'c') },
      { op: 'link', from: source, path: join(root, 'd') },
    ]);
    expect(applied).toEqual({ stopped: null, failedLinks: [{ index: 2, code: 'ENOENT' }] });
    expect(statSync(join(root, 'sub', 'a')).ino).toBe(statSync(source).ino);
    expect(existsSync(join(root, 'sub', 'b'))).toBe(false);
    expect(readlinkSync(join(root, 'sub', 'c'))).toBe('a');
    expect(statSync(join(root, 'd')).nlink).toBe(3);
    await thread.close();
  });

  it('changes owners, and makes a folder with its parents when asked', async () => {
    const thread = new FileSystemThread();
    const deep = join(dir, 'owned', 'a', 'b');
    const applied = await thread.apply([
      { op: 'mkdir', path: deep, recursive: true },
      { op: 'mkdir', path: deep, recursive: true },
      { op: 'chown', path: deep, uid: 12345, gid: 23456 },
    ]);
    expect(applied).toEqual({ stopped: null, failedLinks: [] });
    expect(statSync(deep)).toMatchObject({ uid: 12345, gid: 23456 });
    await thread.close();
  });

  it('deletes a tree within a batch, before the ops after it, and takes nothing there as done', async () => {
    const thread = new FileSystemThread();
    const old = join(dir, 'batch-old');
    mkdirSync(join(old, 'root', 'a'), { recursive: true });
    writeFileSync(join(old, 'root', 'a', 'f'), 'x', { mode: 0o444 });
    const fresh = join(dir, 'batch-fresh');
    const applied = await thread.apply([
      { op: 'remove', path: old },
      { op: 'remove', path: join(dir, 'never-there') },
      { op: 'mkdir', path: fresh },
    ]);
    expect(applied).toEqual({ stopped: null, failedLinks: [] });
    expect([existsSync(old), existsSync(fresh)]).toEqual([false, true]);
    await thread.close();
  });

  it('stops a batch at a folder or symlink it cannot make', async () => {
    const thread = new FileSystemThread();
    const root = join(dir, 'stopped');
    mkdirSync(join(root, 'taken'), { recursive: true });
    const applied = await thread.apply([
      { op: 'mkdir', path: join(root, 'taken') },
      { op: 'mkdir', path: join(root, 'never') },
    ]);
    expect(applied.stopped).toMatchObject({ index: 0, code: 'EEXIST' });
    expect(existsSync(join(root, 'never'))).toBe(false);
    await thread.close();
  });

  it('refuses work once closed', async () => {
    const remover = new FileSystemThread();
    await remover.close();
    await expect(removeTree(remover, join(dir, 'late'))).rejects.toThrow(/closed/);
  });
});
