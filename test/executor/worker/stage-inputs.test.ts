import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../../shared/digest.ts';
import { isLarderError } from '../../../shared/errors.ts';
import { DirectorySchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { FileCache } from '../../../executor/worker/file-cache.ts';
import { FileSystemThread } from '../../../executor/worker/file-system-thread.ts';
import { MissingBlobsError } from '../../../executor/reapi/missing-blobs.ts';
import { stageInputs } from '../../../executor/worker/stage-inputs.ts';
import { storeCas } from '../../../executor/worker/store-cas.ts';
import { digestOf, holdingCas, memoryStore, putBlob, tempDirs } from './helpers.ts';
import { needsRoot } from '../../helpers/tools.ts';

const freshDir = tempDirs();
const thread = new FileSystemThread();
afterAll(() => thread.close());
/** Limits no test tree here reaches, unless it means to. */
const GENEROUS = { maxFiles: 1_000_000, maxDirectories: 100_000, maxBytes: 2 ** 40 };
type DirInit = MessageInitShape<typeof DirectorySchema>;
const ref = (d: Digest) => ({ hash: d.hash, sizeBytes: BigInt(d.sizeBytes) });
const file = (name: string, d: Digest, isExecutable = false) => ({ name, digest: ref(d), isExecutable });
const dir = (name: string, d: Digest) => ({ name, digest: ref(d) });

async function putDir(store: BlobStore, init: DirInit): Promise<Digest> {
  return putBlob(store, toBinary(DirectorySchema, create(DirectorySchema, init)));
}

async function setup() {
  const store = memoryStore();
  const cache = await FileCache.open({ dir: freshDir(), maxBytes: 1 << 24 });
  const execRoot = join(freshDir(), 'root');
  const stage = (rootDigest: Digest, signal?: AbortSignal, limits = GENEROUS) =>
    stageInputs({ cas: storeCas(store, ''), cache, rootDigest, execRoot, limits, thread, signal });
  return { store, cache, execRoot, stage };
}

/** The invalid_argument message staging fails with, after checking it created nothing. */
async function refusal(stage: () => Promise<unknown>, execRoot: string): Promise<string> {
  const err = await stage().then(
    () => null,
    (e: unknown) => e,
  );
  expect(existsSync(execRoot) ? readdirSync(execRoot) : []).toEqual([]);
  return isLarderError(err, 'invalid_argument') ? err.message : `unexpected: ${String(err)}`;
}

describe('stageInputs', () => {
  it('stages files, executables, empty files, symlinks and shared directories', async () => {
    const { store, execRoot, stage } = await setup();
    const text = await putBlob(store, 'shared text\n');
    const tool = await putBlob(store, '#!/bin/sh\n');
    const empty = digestOf('');
    const lib = await putDir(store, { files: [file('data.txt', text)] });
    const root = await putDir(store, {
      files: [file('a.txt', text), file('empty', empty), file('tool', tool, true)],
      directories: [dir('lib1', lib), dir('lib2', lib)],
      symlinks: [{ name: 'link', target: 'lib1/data.txt' }],
    });
    const stats = await stage(root);

    expect(readFileSync(join(execRoot, 'lib2/data.txt'), 'utf8')).toBe('shared text\n');
    expect(statSync(join(execRoot, 'tool')).mode & 0o777).toBe(0o555);
    expect(statSync(join(execRoot, 'a.txt')).mode & 0o777).toBe(0o444);
    expect(statSync(join(execRoot, 'a.txt')).ino).toBe(statSync(join(execRoot, 'lib1/data.txt')).ino);
    expect(statSync(join(execRoot, 'empty')).size).toBe(0);
    expect(readlinkSync(join(execRoot, 'link'))).toBe('lib1/data.txt');
    expect(stats).toEqual({
      files: 5,
      directories: 3,
      bytes: 3 * 12 + 10,
      linked: 4,
      copied: 1,
      fetchedFiles: 2,
      fetchedBytes: 12 + 10,
      createdDirectories: [execRoot, join(execRoot, 'lib1'), join(execRoot, 'lib2')],
    });
    expect(store.gets).toBe(2 + 2); // each distinct Directory once, each distinct file once
  });

  it('stages a cached tree again by links alone, fetching anew a cached file deleted behind the cache', async () => {
    const { store, cache, stage } = await setup();
    const text = await putBlob(store, 'cached text\n');
    const other = await putBlob(store, 'deleted behind its back\n');
    const sub = await putDir(store, { files: [file('t.txt', text)], symlinks: [{ name: 'up', target: '../o.txt' }] });
    const root = await putDir(store, { files: [file('o.txt', other)], directories: [dir('sub', sub)] });
    await stage(root);
    rmSync(cache.pathOf(other, false));
    const again = join(freshDir(), 'again');
    const stats = await stageInputs({
      cas: storeCas(store, ''),
      cache,
      rootDigest: root,
      execRoot: again,
      limits: GENEROUS,
      thread,
    });
    expect(readFileSync(join(again, 'o.txt'), 'utf8')).toBe('deleted behind its back\n');
    expect(readFileSync(join(again, 'sub/up'), 'utf8')).toBe('deleted behind its back\n');
    expect(statSync(join(again, 'sub/t.txt')).ino).toBe(statSync(cache.pathOf(text, false)).ino);
    expect(stats).toMatchObject({ files: 2, linked: 2, copied: 0, fetchedFiles: 1 });
  });

  it('stages trees of more entries than one batch, cached or not', async () => {
    const { store, execRoot, stage } = await setup();
    const directories = [];
    for (let d = 0; d < 3; d++) {
      const files = [];
      for (let f = 0; f < 300; f++) files.push(file(`f${f}`, await putBlob(store, `file ${d}/${f}\n`)));
      directories.push(dir(`d${d}`, await putDir(store, { files })));
    }
    const root = await putDir(store, { directories });
    const cold = await stage(root);
    expect(cold).toMatchObject({ files: 900, linked: 900, fetchedFiles: 900 });
    expect(readFileSync(join(execRoot, 'd2/f299'), 'utf8')).toBe('file 2/299\n');
    rmSync(execRoot, { recursive: true });
    const warm = await stage(root);
    expect(warm).toMatchObject({ files: 900, linked: 900, fetchedFiles: 0 });
    expect(readdirSync(join(execRoot, 'd1')).length).toBe(300);
  });

  it.runIf(needsRoot('chowning to another uid'))(
    "hands every directory it makes to the owner it is given, and leaves the files the cache's",
    async () => {
      const { store, cache, execRoot } = await setup();
      const owner = { uid: 1_900_000_123, gid: 1_900_000_123 };
      const text = await putBlob(store, 'owned text\n');
      const inner = await putDir(store, { files: [file('t.txt', text)] });
      const sub = await putDir(store, { directories: [dir('inner', inner)] });
      const root = await putDir(store, { files: [file('a.txt', text)], directories: [dir('sub', sub)] });
      const stats = await stageInputs({
        cas: storeCas(store, ''),
        cache,
        rootDigest: root,
        execRoot,
        limits: GENEROUS,
        thread,
        owner,
      });
      for (const path of stats.createdDirectories)
        expect([path, statSync(path).uid, statSync(path).gid]).toEqual([path, owner.uid, owner.gid]);
      expect(stats.createdDirectories).toEqual([execRoot, join(execRoot, 'sub'), join(execRoot, 'sub/inner')]);
      for (const path of ['a.txt', 'sub/inner/t.txt'])
        expect(statSync(join(execRoot, path)).uid).toBe(process.getuid!());
    },
  );

  it('lists every missing blob, directories and files, before creating anything', async () => {
    const { store, execRoot, stage } = await setup();
    const goneDir = digestOf('a Directory never uploaded');
    const goneFile = digestOf('a file never uploaded');
    const goneDeeper = digestOf('another file never uploaded');
    const present = await putBlob(store, 'present');
    const sub = await putDir(store, { files: [file('deeper', goneDeeper), file('here', present)] });
    const root = await putDir(store, {
      files: [file('top', goneFile)],
      directories: [dir('gone', goneDir), dir('sub', sub)],
    });
    const err = await stage(root).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingBlobsError);
    expect(new Set((err as MissingBlobsError).digests)).toEqual(new Set([goneDir, goneFile, goneDeeper]));
    expect(existsSync(execRoot), execRoot).toBe(false);
    // A missing root is listed too.
    expect(((await stage(digestOf('no root')).catch((e: unknown) => e)) as MissingBlobsError).digests).toEqual([
      digestOf('no root'),
    ]);
  });

  it.each([
    ['..', /invalid name "\.\."/],
    ['.', /invalid name "\."/],
    ['a/b', /invalid name "a\/b"/],
    ['', /invalid name ""/],
    ['nul\0', /invalid name "nul\\u0000"/],
  ])('refuses the entry name %j', async (name, message) => {
    const { store, execRoot, stage } = await setup();
    const content = await putBlob(store, 'x');
    const sub = await putDir(store, { files: [file(name, content)] });
    const root = await putDir(store, { directories: [dir('sub', sub)] });
    expect(await refusal(() => stage(root), execRoot)).toMatch(message);
    expect(await refusal(() => stage(root), execRoot)).toMatch(/input directory "sub"/);
  });

  it('refuses two entries with one name, across files, directories and symlinks', async () => {
    const { store, execRoot, stage } = await setup();
    const content = await putBlob(store, 'x');
    const empty = await putDir(store, {});
    const fileAndDir = await putDir(store, { files: [file('same', content)], directories: [dir('same', empty)] });
    expect(await refusal(() => stage(fileAndDir), execRoot)).toMatch(/two entries named "same"/);
    const fileAndLink = await putDir(store, {
      files: [file('same', content)],
      symlinks: [{ name: 'same', target: 'x' }],
    });
    expect(await refusal(() => stage(fileAndLink), execRoot)).toMatch(/two entries named "same"/);
    const twoFiles = await putDir(store, { files: [file('same', content), file('same', content)] });
    expect(await refusal(() => stage(twoFiles), execRoot)).toMatch(/two entries named "same"/);
  });

  it('refuses absolute symlinks and symlinks that climb out of the input root', async () => {
    const { store, execRoot, stage } = await setup();
    const withLinks = async (links: Array<{ name: string; target: string }>) => {
      const sub = await putDir(store, { symlinks: links });
      return putDir(store, { directories: [dir('sub', sub)] });
    };
    expect(
      await refusal(async () => stage(await withLinks([{ name: 'abs', target: '/etc/passwd' }])), execRoot),
    ).toMatch(/input symlink "sub\/abs" -> "\/etc\/passwd" is absolute/);
    expect(
      await refusal(async () => stage(await withLinks([{ name: 'up', target: '../../outside' }])), execRoot),
    ).toMatch(/input symlink "sub\/up" -> "..\/..\/outside" points outside the input root/);
    // Neither link looks like it escapes on its own; resolved as the kernel will, the second one does.
    const chained = await withLinks([
      { name: 'top', target: '..' },
      { name: 'sneaky', target: 'top/../x' },
    ]);
    expect(await refusal(() => stage(chained), execRoot)).toMatch(
      /input symlink "sub\/sneaky" -> "top\/..\/x" points outside/,
    );
  });

  it('accepts relative symlinks that stay inside, dangling ones included', async () => {
    const { store, execRoot, stage } = await setup();
    const sub = await putDir(store, {
      symlinks: [
        { name: 'sibling', target: '../other/file' },
        { name: 'dangling', target: 'not-there/../../..' }, // fails with ENOENT at "not-there" in the action
        { name: 'self', target: '.' },
      ],
    });
    const root = await putDir(store, { directories: [dir('sub', sub)] });
    await stage(root);
    expect(readlinkSync(join(execRoot, 'sub/sibling'))).toBe('../other/file');
    expect(readlinkSync(join(execRoot, 'sub/dangling'))).toBe('not-there/../../..');
  });

  it('checks a directory shared by digest at every place it appears', async () => {
    const { store, execRoot, stage } = await setup();
    const shared = await putDir(store, { symlinks: [{ name: 'up2', target: '../../x' }] });
    const deep = await putDir(store, { directories: [dir('shared', shared)] });
    // Fine at deep/shared (resolves to the root), escaping at top/shared.
    const root = await putDir(store, { directories: [dir('deep', deep), dir('top', shared)] });
    expect(await refusal(() => stage(root), execRoot)).toMatch(/"top\/up2"/);
  });

  it('refuses a Directory blob that is not a Directory protobuf', async () => {
    const { store, execRoot, stage } = await setup();
    const garbage = await putBlob(store, new Uint8Array([0x0a, 0xff, 0xff, 0xff]));
    expect(await refusal(() => stage(garbage), execRoot)).toMatch(/is not a valid Directory protobuf/);
    const root = await putDir(store, { directories: [dir('sub', garbage)] });
    expect(await refusal(() => stage(root), execRoot)).toMatch(/is not a valid Directory protobuf/);
  });

  it('refuses a node without a digest or with a malformed one', async () => {
    const { store, execRoot, stage } = await setup();
    const noDigest = await putDir(store, { files: [{ name: 'f' }] });
    expect(await refusal(() => stage(noDigest), execRoot)).toMatch(/input "f" has no digest/);
    const badHash = await putDir(store, { files: [{ name: 'f', digest: { hash: 'XYZ', sizeBytes: 1n } }] });
    expect(await refusal(() => stage(badHash), execRoot)).toMatch(/input "f": not a SHA-256 hash/);
  });

  it('refuses a small DAG that expands into millions of nodes', async () => {
    const { store, execRoot, stage } = await setup();
    let level = await putDir(store, {});
    for (let i = 0; i < 22; i++) level = await putDir(store, { directories: [dir('a', level), dir('b', level)] });
    expect(await refusal(() => stage(level), execRoot)).toMatch(/stages at least \d+ directories.*--max-input-dirs/);
  });

  it('stops when aborted', async () => {
    const { store, stage } = await setup();
    const root = await putDir(store, {});
    await expect(stage(root, AbortSignal.abort(new Error('cancelled')))).rejects.toThrow('cancelled');
  });

  describe('limits, counted before anything is staged', () => {
    it('counts a directory named twice twice, and refuses one over any limit before fetching a file', async () => {
      const { store, execRoot, stage } = await setup();
      const text = await putBlob(store, 'x');
      const lib = await putDir(store, {
        files: [file('a', text), file('b', text)],
        symlinks: [{ name: 'l', target: 'a' }],
      });
      const root = await putDir(store, { files: [file('top', text)], directories: [dir('one', lib), dir('two', lib)] });
      // 1 + 2 × (2 files + 1 symlink) = 7 files and symlinks, 3 directories, 5 bytes.
      const exact = { maxFiles: 7, maxDirectories: 3, maxBytes: 5 };
      for (const [limits, message] of [
        [
          { ...exact, maxFiles: 6 },
          /stages 7 files and symlinks, more than this worker allows \(6, --max-input-files\)/,
        ],
        [{ ...exact, maxDirectories: 2 }, /stages 3 directories.*\(2, --max-input-dirs\)/],
        [{ ...exact, maxBytes: 4 }, /stages 5 bytes of files.*\(4, --max-input-bytes\)/],
      ] as const) {
        const before = store.gets;
        expect(await refusal(() => stage(root, undefined, limits), execRoot)).toMatch(message);
        expect(store.gets - before).toBe(2); // the two Directories, no file
      }
      expect(await stage(root, undefined, exact)).toMatchObject({ files: 5, directories: 3, bytes: 5 });
    });

    it('refuses a fan-out (one directory named 1,000 times) having read two Directories and fetched no file', async () => {
      const { store, cache, execRoot, stage } = await setup();
      const text = await putBlob(store, 'fan-out');
      const wide = await putDir(store, {
        files: Array.from({ length: 1000 }, (_, i) => file(`f${String(i).padStart(4, '0')}`, text)),
      });
      const root = await putDir(store, {
        directories: Array.from({ length: 1000 }, (_, i) => dir(`d${String(i).padStart(4, '0')}`, wide)),
      });
      const started = Date.now();
      expect(await refusal(() => stage(root, undefined, { ...GENEROUS, maxFiles: 999_999 }), execRoot)).toMatch(
        /stages 1000000 files and symlinks.*--max-input-files/,
      );
      expect(Date.now() - started).toBeLessThan(2000);
      expect(store.gets).toBe(2);
      expect(cache.count).toBe(0);
    });

    it('refuses bytes that only add up as staged, even when the blobs were never uploaded', async () => {
      const { execRoot, stage, store } = await setup();
      const huge = { hash: 'a'.repeat(64), sizeBytes: 2 ** 40 }; // 1 TiB, named 64 times: not in the CAS at all
      const sub = await putDir(store, { files: [file('big', huge)] });
      const root = await putDir(store, {
        directories: Array.from({ length: 64 }, (_, i) => dir(`d${i}`, sub)),
      });
      // Over the limit matters more than missing: uploading the blob would not make the action acceptable.
      expect(await refusal(() => stage(root, undefined, { ...GENEROUS, maxBytes: 2 ** 45 }), execRoot)).toMatch(
        /stages 70368744177664 bytes of files.*--max-input-bytes/,
      );
    });

    it('stops reading as soon as the distinct Directories alone pass a limit', async () => {
      const { store, execRoot, stage } = await setup();
      const leaves = await Promise.all(
        Array.from({ length: 2000 }, (_, i) => putDir(store, { symlinks: [{ name: `l${i}`, target: '.' }] })),
      );
      const root = await putDir(store, { directories: leaves.map((d, i) => dir(`d${i}`, d)) });
      expect(await refusal(() => stage(root, undefined, { ...GENEROUS, maxDirectories: 100 }), execRoot)).toMatch(
        /stages at least 2001 directories.*--max-input-dirs/,
      );
      expect(store.gets).toBe(1); // the root named 2,000 directories: nothing below it was read
      expect(await refusal(() => stage(root, undefined, { ...GENEROUS, maxFiles: 100 }), execRoot)).toMatch(
        /stages at least 101 files and symlinks.*--max-input-files/,
      );
      expect(store.gets).toBeLessThanOrEqual(1 + 1 + 256); // the root again, and one batch of leaves at most
    });
  });

  it('stops waiting for a fetch when aborted, and cancels the fetch nobody else waits for', async () => {
    const { store, cache, execRoot } = await setup();
    const held = holdingCas(storeCas(store, ''));
    const text = await putBlob(store, 'slow to fetch');
    const root = await putDir(store, { files: [file('slow', text)] });
    const controller = new AbortController();
    const staging = stageInputs({
      cas: held.cas,
      cache,
      rootDigest: root,
      execRoot,
      limits: GENEROUS,
      thread,
      signal: controller.signal,
    });
    await held.waiting;
    controller.abort(new Error('the operation was cancelled'));
    await expect(staging).rejects.toThrow('the operation was cancelled');
    expect(held.signals.map((s) => s?.aborted)).toEqual([true]);
    expect(readdirSync(execRoot)).toEqual([]);
    held.release();
    expect(cache.count).toBe(0);
  });
});
