/**
 * An action's outputs, before and after it runs: `prepareOutputs` makes the directories that lead up to them,
 * `collectOutputs` turns what the action left into ActionResult fields and uploads the blobs.
 *
 * Which outputs (REAPI v2.0–v2.3, Command): `output_paths` when set, and then `output_files` and
 * `output_directories` are ignored; otherwise those two. All are relative to the working directory.
 * - Before the run, directories leading up to each output are created, but not the outputs themselves, not even
 *   the legacy output directories (the Command comments say so in as many words).
 * - After the run, an output is reported by what it turned out to be: a file (OutputFile), a directory (a Tree
 *   in the CAS), or a symlink, reported with its target as written and never followed. Symlinks go to
 *   `output_symlinks` for `output_paths`, else to `output_file_symlinks` / `output_directory_symlinks` by the
 *   field that named them. A missing output is left out (the client reports it).
 *
 * The worker runs as root and the action did not, so this never follows a symlink the action made out of the
 * exec root: each output's parent is resolved with realpath and must stay inside; outputs and everything in an
 * output directory are looked at with lstat. Errors are LarderError 'invalid_argument' naming the path:
 * malformed or escaping paths, a parent that escapes, a legacy output of the wrong type (REAPI answers
 * FAILED_PRECONDITION there; errors.ts has no such code), and anything but files, directories and symlinks.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import type { Digest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import {
  type Directory,
  DirectoryNodeSchema,
  DirectorySchema,
  FileNodeSchema,
  type OutputDirectory,
  OutputDirectorySchema,
  type OutputFile,
  OutputFileSchema,
  type OutputSymlink,
  OutputSymlinkSchema,
  SymlinkNodeSchema,
  TreeSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { digestMessage } from '../digests.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { WorkerCas } from './cas.ts';

export interface OutputSpec {
  /** The input root the action ran in. */
  execRoot: string;
  /** Command.working_directory, relative to the input root. */
  workingDirectory: string;
  outputPaths: readonly string[];
  outputFiles: readonly string[];
  outputDirectories: readonly string[];
}

/** The ActionResult fields that describe outputs, ready to assign onto an ActionResult. */
export interface CollectedOutputs {
  outputFiles: OutputFile[];
  outputDirectories: OutputDirectory[];
  outputSymlinks: OutputSymlink[];
  outputFileSymlinks: OutputSymlink[];
  outputDirectorySymlinks: OutputSymlink[];
}

/** Files hashed, and blobs uploaded, at once. */
const CONCURRENCY = 8;

type Field = 'output_paths' | 'output_files' | 'output_directories';

interface Wanted {
  field: Field;
  /** As the Command spells it, relative to the working directory: what the ActionResult reports. */
  path: string;
  /** Relative to the input root, normalised; '' is the root itself. */
  fromRoot: string;
}

/**
 * Checks every output path and the working directory, then creates the directories leading up to each output.
 * Returns the directories it created (absolute, parents first), for the caller to hand to the action's user.
 */
export async function prepareOutputs(spec: OutputSpec): Promise<string[]> {
  const wanted = wantedOutputs(spec);
  const realRoot = await realpath(spec.execRoot);
  await checkWorkingDirectory(spec, realRoot);
  const created: string[] = [];
  const ready = new Set<string>(['.']);
  for (const output of wanted) {
    if (output.fromRoot === '') continue;
    let dir = '.';
    for (const part of posix.dirname(output.fromRoot).split('/')) {
      if (part === '.') break;
      dir = posix.join(dir, part);
      if (ready.has(dir)) continue;
      await makeDirectory(spec.execRoot, realRoot, dir, output, created);
      ready.add(dir);
    }
  }
  return created;
}

/** Reads the outputs the action left, uploads their blobs (and Trees) and describes them. */
export async function collectOutputs(spec: OutputSpec & { cas: WorkerCas }): Promise<CollectedOutputs> {
  const wanted = wantedOutputs(spec);
  const realRoot = await realpath(spec.execRoot);
  const result: CollectedOutputs = {
    outputFiles: [],
    outputDirectories: [],
    outputSymlinks: [],
    outputFileSymlinks: [],
    outputDirectorySymlinks: [],
  };
  const uploads = new Map<string, Upload>();

  for (const output of wanted) {
    const found = await locate(spec.execRoot, realRoot, output);
    if (found === null) continue;
    const { path, stats } = found;
    if (stats.isSymbolicLink()) {
      const link = create(OutputSymlinkSchema, { path: output.path, target: await readlink(path) });
      const list = {
        output_paths: result.outputSymlinks,
        output_files: result.outputFileSymlinks,
        output_directories: result.outputDirectorySymlinks,
      }[output.field];
      list.push(link);
    } else if (stats.isFile()) {
      if (output.field === 'output_directories') wrongType(output, 'a file');
      const file = await hashFile(path, output.fromRoot);
      uploads.set(label(file.digest), { digest: file.digest, path });
      result.outputFiles.push(
        create(OutputFileSchema, {
          path: output.path,
          digest: digestMessage(file.digest),
          isExecutable: file.executable,
        }),
      );
    } else if (stats.isDirectory()) {
      if (output.field === 'output_files') wrongType(output, 'a directory');
      const treeDigest = await treeOf(path, output.fromRoot, uploads);
      result.outputDirectories.push(
        create(OutputDirectorySchema, {
          path: output.path,
          treeDigest: digestMessage(treeDigest),
          isTopologicallySorted: true,
        }),
      );
    } else {
      notAnOutput(output.fromRoot);
    }
  }

  const blobs = [...uploads.values()];
  const missing = new Set((await spec.cas.findMissing(blobs.map((b) => b.digest))).map(label));
  await mapLimit(
    blobs.filter((b) => missing.has(label(b.digest))),
    CONCURRENCY,
    (b) => (b.bytes !== undefined ? spec.cas.uploadBytes(b.digest, b.bytes) : spec.cas.uploadFile(b.digest, b.path!)),
  );
  return result;
}

interface Upload {
  digest: Digest;
  path?: string;
  bytes?: Uint8Array;
}

function wantedOutputs(spec: OutputSpec): Wanted[] {
  const workingDirectory = fromRoot('', spec.workingDirectory, 'working_directory');
  const want = (field: Field, paths: readonly string[]) =>
    paths.map((path) => {
      if (path === '' && field === 'output_files')
        throw new LarderError('invalid_argument', 'output_files has an empty path');
      return { field, path, fromRoot: fromRoot(workingDirectory, path, field) };
    });
  if (spec.outputPaths.length > 0) return want('output_paths', spec.outputPaths);
  return [...want('output_files', spec.outputFiles), ...want('output_directories', spec.outputDirectories)];
}

/**
 * `path` relative to the input root, refusing what REAPI does not allow: absolute paths, trailing slashes, empty,
 * '.' or '..' components inside the path, and anything that climbs out of the root. Leading '..' stays allowed
 * while it stays inside: an output may sit above a working directory.
 */
function fromRoot(workingDirectory: string, path: string, field: string): string {
  if (
    path.includes('\0') ||
    path.startsWith('/') ||
    path.endsWith('/') ||
    (path !== '' && posix.normalize(path) !== path)
  ) {
    throw new LarderError('invalid_argument', `${field} ${JSON.stringify(path)} is not a normalised relative path`);
  }
  const joined = posix.join(workingDirectory, path);
  if (joined === '..' || joined.startsWith('../')) {
    throw new LarderError('invalid_argument', `${field} ${JSON.stringify(path)} climbs out of the input root`);
  }
  return joined === '.' ? '' : joined;
}

async function checkWorkingDirectory(spec: OutputSpec, realRoot: string): Promise<void> {
  if (spec.workingDirectory === '') return;
  const real = await realpath(join(spec.execRoot, spec.workingDirectory)).catch(() => null);
  if (real === null || !inside(realRoot, real) || !(await stat(real)).isDirectory()) {
    throw new LarderError(
      'invalid_argument',
      `working_directory ${JSON.stringify(spec.workingDirectory)} is not a directory of the input root`,
    );
  }
}

/** Creates `dir` (root-relative) unless it is there; an input symlink on the way must lead to a directory inside. */
async function makeDirectory(
  execRoot: string,
  realRoot: string,
  dir: string,
  output: Wanted,
  created: string[],
): Promise<void> {
  const path = join(execRoot, dir);
  const stats = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (stats === null) {
    await mkdir(path);
    created.push(path);
    return;
  }
  if (stats.isDirectory()) return;
  if (stats.isSymbolicLink()) {
    const real = await realpath(path).catch(() => null);
    if (real !== null && inside(realRoot, real) && (await stat(real)).isDirectory()) return;
  }
  throw new LarderError(
    'invalid_argument',
    `${output.field} ${JSON.stringify(output.path)}: "${dir}" in the input root is not a directory inside it`,
  );
}

/** The output's path with its parent resolved, and its lstat; null when the action did not produce it. */
async function locate(
  execRoot: string,
  realRoot: string,
  output: Wanted,
): Promise<{ path: string; stats: Awaited<ReturnType<typeof lstat>> } | null> {
  const missing = (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
    throw err;
  };
  if (output.fromRoot === '') return { path: realRoot, stats: await lstat(realRoot) };
  const parent = await realpath(dirname(join(execRoot, output.fromRoot))).catch(missing);
  if (parent === null) return null;
  if (!inside(realRoot, parent)) {
    throw new LarderError(
      'invalid_argument',
      `${output.field} ${JSON.stringify(output.path)}: its parent directory resolves outside the input root`,
    );
  }
  const path = join(parent, basename(output.fromRoot));
  const stats = await lstat(path).catch(missing);
  return stats === null ? null : { path, stats };
}

/**
 * Describes the directory at `path` as a Tree, queueing its files and the Tree itself for upload. Children are
 * deduplicated and listed parents first: the reverse of the order in which a depth-first walk finishes them.
 */
async function treeOf(path: string, where: string, uploads: Map<string, Upload>): Promise<Digest> {
  const finished = new Map<string, Directory>();
  const walk = async (dir: string, rel: string): Promise<{ directory: Directory; digest: Digest }> => {
    const directory = create(DirectorySchema);
    const names = (await readdir(dir)).sort(byUtf8);
    const files: string[] = [];
    for (const name of names) {
      const child = join(dir, name);
      const childRel = posix.join(rel, name);
      const stats = await lstat(child);
      if (stats.isSymbolicLink())
        directory.symlinks.push(create(SymlinkNodeSchema, { name, target: await readlink(child) }));
      else if (stats.isFile()) files.push(name);
      else if (stats.isDirectory())
        directory.directories.push(
          create(DirectoryNodeSchema, { name, digest: digestMessage((await walk(child, childRel)).digest) }),
        );
      else notAnOutput(childRel);
    }
    const hashed = await mapLimit(files, CONCURRENCY, (name) => hashFile(join(dir, name), posix.join(rel, name)));
    files.forEach((name, i) => {
      const { digest, executable } = hashed[i]!;
      uploads.set(label(digest), { digest, path: join(dir, name) });
      directory.files.push(create(FileNodeSchema, { name, digest: digestMessage(digest), isExecutable: executable }));
    });
    const digest = digestOf(toBinary(DirectorySchema, directory));
    if (!finished.has(label(digest))) finished.set(label(digest), directory);
    return { directory, digest };
  };
  const root = await walk(path, where);
  finished.delete(label(root.digest));
  const tree = toBinary(
    TreeSchema,
    create(TreeSchema, { root: root.directory, children: [...finished.values()].reverse() }),
  );
  const treeDigest = digestOf(tree);
  uploads.set(label(treeDigest), { digest: treeDigest, bytes: tree });
  return treeDigest;
}

/** SHA-256 of a regular file, streamed. O_NOFOLLOW: the file cannot have become a symlink since its lstat. */
async function hashFile(path: string, rel: string): Promise<{ digest: Digest; executable: boolean }> {
  const file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const stats = await file.stat();
    if (!stats.isFile()) notAnOutput(rel);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of file.createReadStream({ autoClose: false })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).byteLength;
    }
    return { digest: { hash: hash.digest('hex'), sizeBytes: size }, executable: (stats.mode & 0o111) !== 0 };
  } finally {
    await file.close();
  }
}

function wrongType(output: Wanted, found: string): never {
  throw new LarderError('invalid_argument', `${output.field} ${JSON.stringify(output.path)} is ${found}`);
}

function notAnOutput(rel: string): never {
  throw new LarderError('invalid_argument', `output "${rel}" is neither a regular file, a directory nor a symlink`);
}

function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);
}

/** REAPI sorts names by code point, which is UTF-8 byte order (UTF-16 order differs above U+FFFF). */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function digestOf(bytes: Uint8Array): Digest {
  return { hash: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.byteLength };
}

function label(digest: Digest): string {
  return `${digest.hash}/${digest.sizeBytes}`;
}
