// The file-system thread: whole trees deleted, read-only parts included, and staging's folders, symlinks and links
// made in batches, one request each; small batches with nothing pending are applied on the calling thread, with the
// same semantics (the op tests run both ways).
import {
  chmodSync,
  readdirSync,
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
import { FileSystemThread, INLINE_OPS, throwIfStopped } from '../../../executor/worker/file-system-thread.ts';

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
});

describe.each([
  ['on its thread', 0],
  ['on the calling thread when small', INLINE_OPS],
])('FileSystemThread ops, %s', (_, inlineOps) => {
  const base = join(dir, `ops-${inlineOps}`);
  mkdirSync(base);

  it('makes folders, symlinks and links in order; a failed link is reported and the rest go on', async () => {
    const thread = new FileSystemThread(inlineOps);
    const source = join(base, 'source.txt');
    writeFileSync(source, 'linked');
    const root = join(base, 'staged');
    mkdirSync(root);
    const applied = await thread.apply([
      { op: 'mkdir', path: join(root, 'sub') },
      { op: 'link', from: source, path: join(root, 'sub', 'a') },
      { op: 'link', from: join(base, 'not-there'), path: join(root, 'sub', 'b') },
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
    const thread = new FileSystemThread(inlineOps);
    const deep = join(base, 'owned', 'a', 'b');
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
    const old = join(base, 'batch-old');
    mkdirSync(join(old, 'root', 'a'), { recursive: true });
    writeFileSync(join(old, 'root', 'a', 'f'), 'x', { mode: 0o444 });
    const fresh = join(base, 'batch-fresh');
    const applied = await thread.apply([
      { op: 'remove', path: old },
      { op: 'remove', path: join(base, 'never-there') },
      { op: 'mkdir', path: fresh },
    ]);
    expect(applied).toEqual({ stopped: null, failedLinks: [] });
    expect([existsSync(old), existsSync(fresh)]).toEqual([false, true]);
    await thread.close();
  });

  it('stops a batch at a folder or symlink it cannot make', async () => {
    const thread = new FileSystemThread(inlineOps);
    const root = join(base, 'stopped');
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
    const remover = new FileSystemThread(inlineOps);
    await remover.close();
    await expect(removeTree(remover, join(dir, 'late'))).rejects.toThrow(/closed/);
  });
});

describe('FileSystemThread on the calling thread', () => {
  it('applies a small batch of links, symlinks, owners and made-ahead folders before apply returns', async () => {
    const thread = new FileSystemThread();
    const root = join(dir, 'inline');
    mkdirSync(root);
    const source = join(dir, 'inline-source.txt');
    writeFileSync(source, 'linked');
    const pending = thread.apply([
      { op: 'mkdir', path: root, recursive: true },
      { op: 'chown', path: root, uid: 12345, gid: 23456 },
      { op: 'link', from: source, path: join(root, 'a') },
      { op: 'link', from: join(dir, 'not-there'), path: join(root, 'b') },
      { op: 'symlink', target: 'a', path: join(root, 'c') },
    ]);
    expect(readdirSync(root).sort()).toEqual(['a', 'c']);
    expect(statSync(root)).toMatchObject({ uid: 12345, gid: 23456 });
    expect(await pending).toEqual({ stopped: null, failedLinks: [{ index: 3, code: 'ENOENT' }] });
    expect(thread.sentToThread).toBe(0);
    await thread.close();
  });

  it('sends a batch that makes a new folder, deletes, or is larger to the thread', async () => {
    const thread = new FileSystemThread();
    const made = join(dir, 'made-by-thread');
    await thread.apply([{ op: 'mkdir', path: made }]);
    expect(existsSync(made)).toBe(true);
    expect(thread.sentToThread).toBe(1);
    await thread.apply([{ op: 'remove', path: made }]);
    expect(existsSync(made)).toBe(false);
    expect(thread.sentToThread).toBe(2);
    const source = join(dir, 'many-source.txt');
    writeFileSync(source, 'linked');
    const links = Array.from({ length: INLINE_OPS + 1 }, (_, i) => join(dir, `many-link-${i}`));
    await thread.apply(links.map((path) => ({ op: 'link' as const, from: source, path })));
    expect(links.filter(existsSync)).toEqual(links);
    expect(thread.sentToThread).toBe(3);
    await thread.close();
  });

  it('sends a small batch to the thread while one sent before it is pending there, so it cannot overtake it', async () => {
    const thread = new FileSystemThread();
    const tree = join(dir, 'overtaken');
    mkdirSync(join(tree, 'a'), { recursive: true });
    for (let i = 0; i < 2000; i++) writeFileSync(join(tree, 'a', `f${i}`), 'x');
    const source = join(dir, 'overtaking-source.txt');
    writeFileSync(source, 'linked');
    const removed = thread.apply([{ op: 'remove', path: tree }]);
    const linked = thread.apply([{ op: 'link', from: source, path: join(tree, 'a', 'late') }]);
    expect(await removed).toEqual({ stopped: null, failedLinks: [] });
    // Applied at once, the link would have gone into the old tree (and the removal taken it): after it, it fails.
    expect(await linked).toEqual({ stopped: null, failedLinks: [{ index: 0, code: 'ENOENT' }] });
    expect(existsSync(tree)).toBe(false);
    await thread.close();
  });
});
