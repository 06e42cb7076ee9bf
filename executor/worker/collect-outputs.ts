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
 * output directory are looked at without following links (lstat, directory entry types), and files are opened
 * as output-file.ts says, which is safe once no process of the action is left (the runner waits for that).
 * Blobs are uploaded in batches (upload-blobs.ts). Errors are LarderError 'invalid_argument' naming the path:
 * malformed or escaping paths, a parent that escapes, a legacy output of the wrong type (REAPI answers
 * FAILED_PRECONDITION there; errors.ts has no such code), and anything but files, directories and symlinks.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { type Digest, formatDigest } from '../../shared/digest.ts';
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
import { digestMessage } from '../reapi/digests.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { WorkerCas } from './cas.ts';
import {
  type HashedFile,
  hashLargeFile,
  hashSmallFileSync,
  inside,
  notAnOutput,
  openOutputFile,
} from './output-file.ts';
import { type OutputBlob, uploadBlobs } from './upload-blobs.ts';

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

/** Outputs looked at at once. */
const OUTPUT_CONCURRENCY = 8;
/** Large files hashed at once. */
const HASH_CONCURRENCY = 8;
/** Small files hashed (synchronously) between two turns of the event loop: about a millisecond's work. */
const SYNC_HASH_CHUNK = 64;
/**
 * Small files' bytes are kept from hashing to upload, up to this much in all, so 100,000 small outputs are read
 * once, not twice; beyond it (and for larger files) a file is read again when it is sent.
 */
const KEEP_FILE_BYTES = 64 * 1024;
const KEEP_BUDGET_BYTES = 64 * 1024 * 1024;

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
  // Nothing to check or prepare: no file-system call (each costs a trip through the thread pool).
  if (wanted.length === 0 && spec.workingDirectory === '') return [];
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
  const result: CollectedOutputs = {
    outputFiles: [],
    outputDirectories: [],
    outputSymlinks: [],
    outputFileSymlinks: [],
    outputDirectorySymlinks: [],
  };
  if (wanted.length === 0) return result;
  const realRoot = await realpath(spec.execRoot);
  const context: Context = { realRoot, uploads: new Map(), keptBytes: 0 };
  const described = await mapLimit(wanted, OUTPUT_CONCURRENCY, (output) => describe(spec.execRoot, output, context));
  described.forEach((found, i) => {
    if (found === null) return;
    if (found.kind === 'file') result.outputFiles.push(found.file);
    else if (found.kind === 'directory') result.outputDirectories.push(found.directory);
    else {
      const list = {
        output_paths: result.outputSymlinks,
        output_files: result.outputFileSymlinks,
        output_directories: result.outputDirectorySymlinks,
      }[wanted[i]!.field];
      list.push(found.symlink);
    }
  });
  const open = async (path: string, rel: string) => (await openOutputFile(path, realRoot, rel)).file;
  await uploadBlobs(spec.cas, [...context.uploads.values()], open);
  return result;
}

/** What collection shares while outputs are described: the real exec root, and the blobs to upload by digest. */
interface Context {
  realRoot: string;
  uploads: Map<string, OutputBlob>;
  /** Bytes of small files held in `uploads` (KEEP_BUDGET_BYTES at most). */
  keptBytes: number;
}

type Described =
  | { kind: 'file'; file: OutputFile }
  | { kind: 'directory'; directory: OutputDirectory }
  | { kind: 'symlink'; symlink: OutputSymlink };

/** One output as the action left it, its blobs queued for upload; null when it is not there. */
async function describe(execRoot: string, output: Wanted, context: Context): Promise<Described | null> {
  const found = await locate(execRoot, context.realRoot, output);
  if (found === null) return null;
  const { path, stats } = found;
  if (stats.isSymbolicLink()) {
    const target = await readlink(path);
    return { kind: 'symlink', symlink: create(OutputSymlinkSchema, { path: output.path, target }) };
  }
  if (stats.isFile()) {
    if (output.field === 'output_directories') wrongType(output, 'a file');
    const [{ digest, executable }] = (await hashFiles([{ path, rel: output.fromRoot }], context)) as [HashedFile];
    const file = create(OutputFileSchema, {
      path: output.path,
      digest: digestMessage(digest),
      isExecutable: executable,
    });
    return { kind: 'file', file };
  }
  if (stats.isDirectory()) {
    if (output.field === 'output_files') wrongType(output, 'a directory');
    const treeDigest = await treeOf(path, output.fromRoot, context);
    const directory = create(OutputDirectorySchema, {
      path: output.path,
      treeDigest: digestMessage(treeDigest),
      isTopologicallySorted: true,
    });
    return { kind: 'directory', directory };
  }
  notAnOutput(output.fromRoot);
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
 * Entries are told apart by their directory entry type, which describes the entry itself, never a link's target.
 */
async function treeOf(path: string, where: string, context: Context): Promise<Digest> {
  const finished = new Map<string, Directory>();
  const walk = async (dir: string, rel: string): Promise<{ directory: Directory; digest: Digest }> => {
    const directory = create(DirectorySchema);
    const files: string[] = [];
    for (const entry of sortedByUtf8(await readdir(dir, { withFileTypes: true }))) {
      const { name } = entry;
      const child = join(dir, name);
      const childRel = posix.join(rel, name);
      if (entry.isSymbolicLink())
        directory.symlinks.push(create(SymlinkNodeSchema, { name, target: await readlink(child) }));
      else if (entry.isFile()) files.push(name);
      else if (entry.isDirectory())
        directory.directories.push(
          create(DirectoryNodeSchema, { name, digest: digestMessage((await walk(child, childRel)).digest) }),
        );
      else notAnOutput(childRel);
    }
    const hashed = await hashFiles(
      files.map((name) => ({ path: join(dir, name), rel: posix.join(rel, name) })),
      context,
    );
    files.forEach((name, i) => {
      const { digest, executable } = hashed[i]!;
      directory.files.push(create(FileNodeSchema, { name, digest: digestMessage(digest), isExecutable: executable }));
    });
    const digest = digestOf(toBinary(DirectorySchema, directory));
    if (!finished.has(formatDigest(digest))) finished.set(formatDigest(digest), directory);
    return { directory, digest };
  };
  const root = await walk(path, where);
  finished.delete(formatDigest(root.digest));
  const tree = toBinary(
    TreeSchema,
    create(TreeSchema, { root: root.directory, children: [...finished.values()].reverse() }),
  );
  const treeDigest = digestOf(tree);
  context.uploads.set(formatDigest(treeDigest), { digest: treeDigest, bytes: tree });
  return treeDigest;
}

/**
 * Hashes regular output files (opened as output-file.ts says), in order, and queues them for upload: small ones
 * synchronously, a chunk per turn of the event loop, large ones streamed a few at a time.
 */
async function hashFiles(files: ReadonlyArray<{ path: string; rel: string }>, context: Context): Promise<HashedFile[]> {
  const hashed = new Array<HashedFile>(files.length);
  const large: number[] = [];
  for (let i = 0; i < files.length; i++) {
    if (i > 0 && i % SYNC_HASH_CHUNK === 0) await new Promise((resolve) => setImmediate(resolve));
    const small = hashSmallFileSync(files[i]!.path, context.realRoot, files[i]!.rel);
    if (small === null) large.push(i);
    else hashed[i] = small;
  }
  await mapLimit(large, HASH_CONCURRENCY, async (i) => {
    hashed[i] = await hashLargeFile(files[i]!.path, context.realRoot, files[i]!.rel);
  });
  files.forEach(({ path, rel }, i) => {
    const { digest, bytes } = hashed[i]!;
    if (context.uploads.has(formatDigest(digest))) return;
    const keep =
      bytes !== null &&
      bytes.byteLength <= KEEP_FILE_BYTES &&
      context.keptBytes + bytes.byteLength <= KEEP_BUDGET_BYTES;
    if (keep) context.keptBytes += bytes.byteLength;
    context.uploads.set(formatDigest(digest), keep ? { digest, bytes } : { digest, path, rel });
  });
  return hashed;
}

function wrongType(output: Wanted, found: string): never {
  throw new LarderError('invalid_argument', `${output.field} ${JSON.stringify(output.path)} is ${found}`);
}

/** REAPI sorts names by code point, which is UTF-8 byte order (UTF-16 order differs above U+FFFF). */
function sortedByUtf8<T extends { name: string }>(entries: T[]): T[] {
  return entries
    .map((entry) => ({ entry, key: Buffer.from(entry.name) }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map(({ entry }) => entry);
}

function digestOf(bytes: Uint8Array): Digest {
  return { hash: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.byteLength };
}
