import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isLarderError } from '../../../shared/errors.ts';
import {
  type Digest as DigestMessage,
  DirectorySchema,
  TreeSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { MemoryStore } from '../../../shared/storage/memory.ts';
import { collect } from '../../../shared/storage/streams.ts';
import { verifying } from '../../../shared/storage/verifying.ts';
import { collectOutputs, type OutputSpec, prepareOutputs } from '../../../executor/worker/collect-outputs.ts';
import type { WorkerCas } from '../../../executor/worker/cas.ts';
import { storeCas } from '../../../executor/worker/store-cas.ts';
import { digestOf, tempDirs } from './helpers.ts';

const freshDir = tempDirs();

function setup() {
  const inner = new MemoryStore({ maxBytes: 1 << 24 });
  const puts: string[] = [];
  const store = verifying({
    get: (k) => inner.get(k),
    stat: (k) => inner.stat(k),
    put: (k, b, s) => {
      puts.push(k.hash);
      return inner.put(k, b, s);
    },
  });
  const execRoot = join(freshDir(), 'root');
  mkdirSync(execRoot);
  const spec = (fields: Partial<OutputSpec>): OutputSpec => ({
    execRoot,
    workingDirectory: '',
    outputPaths: [],
    outputFiles: [],
    outputDirectories: [],
    ...fields,
  });
  const cas = storeCas(store, '');
  const collectFrom = (fields: Partial<OutputSpec>, through: WorkerCas = cas) =>
    collectOutputs({ cas: through, ...spec(fields) });
  const read = async (digest: DigestMessage | undefined) => {
    const blob = await inner.get({ instance: '', kind: 'cas', hash: digest!.hash });
    return blob === null ? null : collect(blob.body, 1 << 24);
  };
  const write = (path: string, content: string, mode = 0o644) => {
    mkdirSync(join(execRoot, path, '..'), { recursive: true });
    writeFileSync(join(execRoot, path), content);
    chmodSync(join(execRoot, path), mode);
  };
  return { execRoot, spec, cas, collectFrom, read, write, puts };
}

/** The invalid_argument message a call fails with. */
async function refusal(call: () => Promise<unknown>): Promise<string> {
  const err = await call().then(
    () => null,
    (e: unknown) => e,
  );
  return isLarderError(err, 'invalid_argument') ? err.message : `unexpected: ${String(err)}`;
}

describe('prepareOutputs', () => {
  it('creates the directories leading up to outputs, not the legacy output directories themselves', async () => {
    const { execRoot, spec } = setup();
    mkdirSync(join(execRoot, 'a'));
    const created = await prepareOutputs(spec({ outputFiles: ['a/b/c.o', 'top.o'], outputDirectories: ['d/e/out'] }));
    expect(created).toEqual([join(execRoot, 'a/b'), join(execRoot, 'd'), join(execRoot, 'd/e')]);
    expect(existsSync(join(execRoot, 'd/e/out')), join(execRoot, 'd/e/out')).toBe(false);
    expect(existsSync(join(execRoot, 'a/b/c.o')), join(execRoot, 'a/b/c.o')).toBe(false);
  });

  it('follows output_paths alone when it is set, relative to the working directory', async () => {
    const { execRoot, spec } = setup();
    mkdirSync(join(execRoot, 'work'));
    const created = await prepareOutputs(
      spec({
        workingDirectory: 'work',
        outputPaths: ['x/y', '../up/z'],
        outputFiles: ['ignored/f'],
        outputDirectories: ['ignored2/d'],
      }),
    );
    expect(created).toEqual([join(execRoot, 'work/x'), join(execRoot, 'up')]);
  });

  it.each([
    [{ outputFiles: ['/etc/passwd'] }, /output_files "\/etc\/passwd" is not a normalised relative path/],
    [{ outputFiles: ['a/../b'] }, /output_files "a\/..\/b" is not a normalised/],
    [{ outputFiles: ['a//b'] }, /output_files "a\/\/b" is not a normalised/],
    [{ outputFiles: ['./a'] }, /output_files ".\/a" is not a normalised/],
    [{ outputDirectories: ['d/'] }, /output_directories "d\/" is not a normalised/],
    [{ outputPaths: ['../escape'] }, /output_paths "..\/escape" climbs out of the input root/],
    [{ outputPaths: ['nul\0'] }, /output_paths "nul\\u0000" is not a normalised/],
    [{ outputFiles: [''] }, /output_files has an empty path/],
    [{ workingDirectory: '../w' }, /working_directory "..\/w" climbs out/],
    [{ workingDirectory: '/w' }, /working_directory "\/w" is not a normalised/],
    [{ workingDirectory: 'missing' }, /working_directory "missing" is not a directory of the input root/],
  ] as Array<[Partial<OutputSpec>, RegExp]>)('refuses %j', async (fields, message) => {
    const { execRoot, spec } = setup();
    expect(await refusal(() => prepareOutputs(spec({ outputFiles: ['fine/x'], ...fields })))).toMatch(message);
    expect(existsSync(join(execRoot, 'fine')), join(execRoot, 'fine')).toBe(false); // checked before anything is made
  });

  it('goes through input symlinks to directories inside the root, never out of it', async () => {
    const { execRoot, spec } = setup();
    mkdirSync(join(execRoot, 'real'));
    symlinkSync('real', join(execRoot, 'alias'));
    expect(await prepareOutputs(spec({ outputFiles: ['alias/sub/f'] }))).toEqual([join(execRoot, 'alias/sub')]);
    expect(existsSync(join(execRoot, 'real/sub')), join(execRoot, 'real/sub')).toBe(true);

    const outside = freshDir();
    symlinkSync(outside, join(execRoot, 'away'));
    expect(await refusal(() => prepareOutputs(spec({ outputFiles: ['away/sub/f'] })))).toMatch(
      /"away" in the input root is not a directory inside it/,
    );
    expect(existsSync(join(outside, 'sub')), join(outside, 'sub')).toBe(false);
  });
});

describe('collectOutputs', () => {
  it('reports files with their executable bit and uploads them once', async () => {
    const { collectFrom, read, write, puts } = setup();
    write('out/tool', '#!/bin/sh\n', 0o750);
    write('out/data', 'same bytes');
    write('out/copy', 'same bytes');
    const result = await collectFrom({ outputFiles: ['out/tool', 'out/data', 'out/copy', 'out/never-made'] });
    expect(result.outputFiles.map((f) => [f.path, f.isExecutable, f.digest?.hash])).toEqual([
      ['out/tool', true, digestOf('#!/bin/sh\n').hash],
      ['out/data', false, digestOf('same bytes').hash],
      ['out/copy', false, digestOf('same bytes').hash],
    ]);
    expect(new TextDecoder().decode((await read(result.outputFiles[1]!.digest))!)).toBe('same bytes');
    expect(puts).toHaveLength(2);
    // Blobs the CAS already holds are not sent again.
    await collectFrom({ outputFiles: ['out/tool', 'out/data'] });
    expect(puts).toHaveLength(2);
  });

  it('describes an output directory as a sorted, deduplicated, topologically sorted Tree', async () => {
    const { execRoot, collectFrom, read, write } = setup();
    write('dir/b.txt', 'bee');
    write('dir/a.sh', 'echo a', 0o755);
    write('dir/sub1/leaf/x', 'x');
    write('dir/sub2/leaf/x', 'x'); // sub1 and sub2 are one Directory
    mkdirSync(join(execRoot, 'dir/empty'));
    symlinkSync('/etc/passwd', join(execRoot, 'dir/abs-link'));
    const result = await collectFrom({ outputDirectories: ['dir'] });

    expect(result.outputDirectories).toHaveLength(1);
    const output = result.outputDirectories[0]!;
    expect(output.path).toBe('dir');
    expect(output.isTopologicallySorted).toBe(true);
    const tree = fromBinary(TreeSchema, (await read(output.treeDigest))!);
    const root = tree.root!;
    expect(root.files.map((f) => [f.name, f.isExecutable])).toEqual([
      ['a.sh', true],
      ['b.txt', false],
    ]);
    expect(root.directories.map((d) => d.name)).toEqual(['empty', 'sub1', 'sub2']);
    expect(root.directories[1]!.digest).toEqual(root.directories[2]!.digest);
    expect(root.symlinks.map((s) => [s.name, s.target])).toEqual([['abs-link', '/etc/passwd']]);
    // empty, sub (shared), leaf: each once, every parent before its children.
    expect(tree.children).toHaveLength(3);
    const hashes = tree.children.map((c) => digestOf(toBinary(DirectorySchema, c)).hash);
    const sub = tree.children[hashes.indexOf(root.directories[1]!.digest!.hash)]!;
    const leafAt = hashes.indexOf(sub.directories[0]!.digest!.hash);
    expect(leafAt).toBeGreaterThan(hashes.indexOf(root.directories[1]!.digest!.hash));
    expect(tree.children[leafAt]!.files.map((f) => f.name)).toEqual(['x']);
    // The Tree's files are in the CAS.
    expect(new TextDecoder().decode((await read(tree.children[leafAt]!.files[0]!.digest))!)).toBe('x');
    expect(await read(root.files[0]!.digest)).not.toBeNull();
  });

  it('reports symlink outputs as symlinks with their target as written, never followed', async () => {
    const { execRoot, collectFrom, puts } = setup();
    mkdirSync(join(execRoot, 'out'));
    symlinkSync('/etc/passwd', join(execRoot, 'out/abs'));
    symlinkSync('../../../../etc', join(execRoot, 'out/rel'));
    const modern = await collectFrom({ outputPaths: ['out/abs', 'out/rel'] });
    expect(modern.outputSymlinks.map((s) => [s.path, s.target])).toEqual([
      ['out/abs', '/etc/passwd'],
      ['out/rel', '../../../../etc'],
    ]);
    expect(modern.outputFiles).toEqual([]);
    expect(modern.outputDirectories).toEqual([]);
    const legacy = await collectFrom({ outputFiles: ['out/abs'], outputDirectories: ['out/rel'] });
    expect(legacy.outputFileSymlinks.map((s) => s.target)).toEqual(['/etc/passwd']);
    expect(legacy.outputDirectorySymlinks.map((s) => s.target)).toEqual(['../../../../etc']);
    expect(legacy.outputSymlinks).toEqual([]);
    expect(puts).toEqual([]);
  });

  it('refuses an output whose parent is a symlink out of the exec root', async () => {
    const { execRoot, collectFrom, puts } = setup();
    const outside = freshDir();
    writeFileSync(join(outside, 'secret'), 'not yours');
    symlinkSync(outside, join(execRoot, 'abs'));
    mkdirSync(join(execRoot, 'deep'));
    symlinkSync('../..', join(execRoot, 'deep/up'));
    expect(await refusal(() => collectFrom({ outputFiles: ['abs/secret'] }))).toMatch(
      /output_files "abs\/secret": its parent directory resolves outside/,
    );
    expect(await refusal(() => collectFrom({ outputPaths: ['deep/up/x'] }))).toMatch(
      /output_paths "deep\/up\/x": its parent directory resolves outside/,
    );
    expect(puts).toEqual([]);
  });

  it('reports outputs by what they turned out to be for output_paths, relative to the working directory', async () => {
    const { execRoot, collectFrom, write } = setup();
    mkdirSync(join(execRoot, 'work'));
    write('work/file', 'f');
    write('work/dir/inner', 'i');
    write('sibling', 's');
    const result = await collectFrom({ workingDirectory: 'work', outputPaths: ['../sibling', 'dir', 'file', 'gone'] });
    expect(result.outputFiles.map((f) => f.path)).toEqual(['../sibling', 'file']);
    expect(result.outputDirectories.map((d) => d.path)).toEqual(['dir']);
  });

  it('refuses legacy outputs of the wrong type', async () => {
    const { collectFrom, write } = setup();
    write('d/inner', 'i');
    write('f', 'f');
    expect(await refusal(() => collectFrom({ outputFiles: ['d'] }))).toMatch(/output_files "d" is a directory/);
    expect(await refusal(() => collectFrom({ outputDirectories: ['f'] }))).toMatch(/output_directories "f" is a file/);
  });

  it('refuses outputs that are neither files, directories nor symlinks', async () => {
    const { execRoot, collectFrom } = setup();
    mkdirSync(join(execRoot, 'dir'));
    execFileSync('mkfifo', [join(execRoot, 'fifo'), join(execRoot, 'dir/fifo')]);
    expect(await refusal(() => collectFrom({ outputPaths: ['fifo'] }))).toMatch(
      /output "fifo" is neither a regular file/,
    );
    expect(await refusal(() => collectFrom({ outputPaths: ['dir'] }))).toMatch(
      /output "dir\/fifo" is neither a regular file/,
    );
  });

  it('uploads many outputs in a few batch calls, bounded in size, count and concurrency', async () => {
    const { execRoot, cas, collectFrom, read, puts } = setup();
    mkdirSync(join(execRoot, 'out/tree'), { recursive: true });
    for (let i = 0; i < 5000; i++) writeFileSync(join(execRoot, `out/tree/f${i}`), `tree file ${i}\n`);
    const listed = Array.from({ length: 2000 }, (_, i) => `out/listed${i}`);
    for (const [i, path] of listed.entries()) writeFileSync(join(execRoot, path), `listed file ${i}\n`);
    writeFileSync(join(execRoot, 'out/large'), Buffer.alloc((cas.maxBatchBytes ?? 4 << 20) + 1, 7));
    const calls = { findMissing: 0, uploadBatch: 0, uploadBytes: 0, uploadFile: 0 };
    let inFlight = 0;
    let mostInFlight = 0;
    const counting: WorkerCas = {
      ...cas,
      maxBatchBytes: cas.maxBatchBytes,
      findMissing(digests) {
        calls.findMissing++;
        return cas.findMissing(digests);
      },
      async uploadBatch(blobs) {
        calls.uploadBatch++;
        expect(blobs.length).toBeLessThanOrEqual(1000);
        expect(blobs.reduce((sum, b) => sum + b.bytes.byteLength, 0)).toBeLessThanOrEqual(cas.maxBatchBytes);
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        try {
          await cas.uploadBatch(blobs);
        } finally {
          inFlight--;
        }
      },
      uploadBytes(digest, bytes) {
        calls.uploadBytes++;
        return cas.uploadBytes(digest, bytes);
      },
      uploadFile(digest, file) {
        calls.uploadFile++;
        return cas.uploadFile(digest, file);
      },
    };
    const result = await collectFrom(
      { outputFiles: [...listed, 'out/large'], outputDirectories: ['out/tree'] },
      counting,
    );
    expect(result.outputFiles).toHaveLength(2001);
    expect(calls).toEqual({ findMissing: 1, uploadBatch: 8, uploadBytes: 0, uploadFile: 1 }); // 7,001 small blobs
    expect(mostInFlight).toBeLessThanOrEqual(4);
    expect(puts).toHaveLength(7002);
    expect((await read(result.outputFiles[1234]!.digest))?.toString()).toBe('listed file 1234\n');
    const tree = fromBinary(TreeSchema, (await read(result.outputDirectories[0]!.treeDigest))!);
    expect(tree.root!.files).toHaveLength(5000);
  });

  it('never reads a file outside the exec root, even while a process swaps a directory for a symlink', async () => {
    const { execRoot, collectFrom, puts } = setup();
    const outside = freshDir();
    const secret = `secret ${randomUUID()}\n`;
    writeFileSync(join(outside, 'secret'), secret);
    mkdirSync(join(execRoot, 'out/sub'), { recursive: true });
    writeFileSync(join(execRoot, 'out/sub/inside'), 'inside\n');
    symlinkSync(outside, join(execRoot, 'out/link'));
    // A leftover process of the action: renames out/sub away and the symlink into its place, over and over.
    const marker = `larder-test-swapper-${randomUUID()}`;
    const swapper = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'); const [d] = process.argv.slice(-1);
         for (let i = 0; i < 5e6; i++) { try { fs.renameSync(d + '/sub', d + '/real'); fs.renameSync(d + '/link', d + '/sub');
           fs.renameSync(d + '/sub', d + '/link'); fs.renameSync(d + '/real', d + '/sub'); } catch {} }`,
        marker,
        join(execRoot, 'out'),
      ],
      { stdio: 'ignore' },
    );
    const outcomes = { clean: 0, refused: 0, leaked: 0 };
    try {
      const started = Date.now();
      for (let attempt = 0; attempt < 400 && Date.now() - started < 15_000; attempt++) {
        const result = await collectFrom({ outputFiles: ['out/sub/secret'], outputDirectories: ['out'] }).catch(
          () => null,
        );
        if (result === null) outcomes.refused++;
        else outcomes.clean++;
      }
    } finally {
      swapper.kill('SIGKILL'); // by the handle: only the process this test started
    }
    const secretHash = digestOf(secret).hash;
    outcomes.leaked = puts.filter((hash) => hash === secretHash).length;
    // Trees that name the secret would leak its name and digest even if its bytes were not uploaded.
    expect(puts).not.toContain(secretHash);
    expect(outcomes.leaked).toBe(0);
    expect(outcomes.refused).toBeGreaterThan(0); // the race was really run
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe(secret);
  }, 30_000);
});
