/**
 * The tool inputs of a persistent-worker action: the files whose content the worker process is made of, so that a
 * new version of a tool never gets a process started from the old one. Bazel ≥ 6 (with
 * --experimental_remote_mark_tool_inputs) marks them with the `bazel_tool_input` node property; for older clients,
 * which mark nothing, they are the input files named on the worker's start-up command line.
 */
import { fromBinary } from '@bufbuild/protobuf';
import { type Digest, formatDigest, parseDigest } from '../../../shared/digest.ts';
import { LarderError } from '../../../shared/errors.ts';
import {
  type Directory,
  DirectorySchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

export const TOOL_INPUT_PROPERTY = 'bazel_tool_input';

const MAX_DIRECTORY_BYTES = 4 * 1024 * 1024;
/** Directory protos are immutable by digest: remembered across actions, so a warm worker's key costs lookups only. */
const CACHE_LIMIT = 20_000;
const MAX_NODES = 1_000_000;

/**
 * What reading the tree needs of the action's CAS: whole Directory protos, or null when missing (the worker's
 * WorkerCas, worker/cas.ts, is one).
 */
export interface ProtoReader {
  readBytes(digest: Digest, maxBytes: number): Promise<Uint8Array | null>;
}

export interface ToolInput {
  path: string;
  digest: Digest;
  /** Marked `bazel_tool_input` by the client. */
  marked: boolean;
}

export class ToolInputFinder {
  private readonly directories = new Map<string, Directory>();

  /** Every file of the input tree (path relative to the root, digest, whether it is marked), sorted by path. */
  async files(cas: ProtoReader, root: Digest): Promise<ToolInput[]> {
    const files: ToolInput[] = [];
    let nodes = 0;
    const walk = async (digest: Digest, prefix: string) => {
      // A small DAG can name the same directory many times over: bound the expanded tree, as staging does.
      if (++nodes > MAX_NODES)
        throw new LarderError('too_large', `the input tree expands to more than ${MAX_NODES} directories`);
      const directory = await this.directory(cas, digest);
      for (const file of directory.files) {
        if (file.digest === undefined) continue;
        const marked = file.nodeProperties?.properties.some((p) => p.name === TOOL_INPUT_PROPERTY) ?? false;
        files.push({ path: prefix + file.name, digest: parseDigest(file.digest.hash, file.digest.sizeBytes), marked });
      }
      for (const child of directory.directories) {
        if (child.digest !== undefined)
          await walk(parseDigest(child.digest.hash, child.digest.sizeBytes), `${prefix}${child.name}/`);
      }
    };
    await walk(root, '');
    return files.sort(byPath);
  }

  /** The marked files, else (older clients mark none) the files the worker's start-up command line names. */
  toolInputs(files: readonly ToolInput[], startup: readonly string[]): ToolInput[] {
    const marked = files.filter((file) => file.marked);
    if (marked.length > 0) return marked;
    const named = new Set(startup.map((arg) => arg.replace(/^\.\//, '')));
    return files.filter((file) => named.has(file.path));
  }

  private async directory(cas: ProtoReader, digest: Digest): Promise<Directory> {
    const id = formatDigest(digest);
    const known = this.directories.get(id);
    if (known !== undefined) return known;
    const bytes = await cas.readBytes(digest, MAX_DIRECTORY_BYTES);
    // Staging reads the same tree next and reports what is missing or malformed with the full list.
    if (bytes === null) throw new LarderError('not_found', `directory ${id} is missing`);
    const directory = fromBinary(DirectorySchema, bytes);
    if (this.directories.size >= CACHE_LIMIT) this.directories.delete(this.directories.keys().next().value!);
    this.directories.set(id, directory);
    return directory;
  }
}

function byPath(a: ToolInput, b: ToolInput): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}
