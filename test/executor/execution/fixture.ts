/**
 * Builds REAPI actions the way a client does (Directory, Command and Action protos uploaded to the CAS) and runs
 * them through a real executor's Execution service: the execution suites share it.
 */
import { create, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { anyUnpack } from '@bufbuild/protobuf/wkt';
import {
  ActionSchema,
  CommandSchema,
  type Digest,
  DigestSchema,
  type DirectoryNodeSchema,
  DirectorySchema,
  type FileNodeSchema,
  type SymlinkNodeSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
  type ExecuteOperationMetadata,
  ExecuteOperationMetadataSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { Operation } from '../../../shared/proto/gen/google/longrunning/operations_pb.ts';
import { PreconditionFailureSchema } from '../../../shared/proto/gen/google/rpc/error_details_pb.ts';
import { type Clients, digestOf, drain } from '../helpers.ts';

type DirectoryInit = MessageInitShape<typeof DirectorySchema>;
type CommandInit = MessageInitShape<typeof CommandSchema>;

export interface FileSpec {
  content: string | Uint8Array;
  executable?: boolean;
}

/** A tree as nested objects: a string or FileSpec is a file, an object a directory, `{ symlink }` a symlink. */
export type TreeSpec = { [name: string]: string | FileSpec | TreeSpec | { symlink: string } };

export class ActionFixture {
  constructor(
    private readonly clients: Clients,
    readonly instance = '',
  ) {}

  async upload(...blobs: Uint8Array[]): Promise<Digest[]> {
    const digests = blobs.map((b) => create(DigestSchema, digestOf(b)));
    const reply = await this.clients.cas.batchUpdateBlobs({
      instanceName: this.instance,
      requests: blobs.map((data, i) => ({ digest: digests[i]!, data })),
    });
    for (const r of reply.responses) if (r.status?.code !== 0) throw new Error(`upload failed: ${r.status?.message}`);
    return digests;
  }

  /** Uploads a Directory message as given (for malformed trees) and returns its digest. */
  async directory(message: DirectoryInit): Promise<Digest> {
    const [digest] = await this.upload(toBinary(DirectorySchema, create(DirectorySchema, message)));
    return digest!;
  }

  /** Uploads a whole tree (files, directories, symlinks) and returns the root Directory's digest. */
  async tree(spec: TreeSpec): Promise<Digest> {
    const files: MessageInitShape<typeof FileNodeSchema>[] = [];
    const directories: MessageInitShape<typeof DirectoryNodeSchema>[] = [];
    const symlinks: MessageInitShape<typeof SymlinkNodeSchema>[] = [];
    for (const name of Object.keys(spec).sort()) {
      const entry = spec[name]!;
      if (typeof entry === 'string' || 'content' in entry) {
        const file = typeof entry === 'string' ? { content: entry } : (entry as FileSpec);
        const bytes = typeof file.content === 'string' ? Buffer.from(file.content) : file.content;
        const [digest] = await this.upload(bytes);
        files.push({ name, digest, isExecutable: file.executable ?? false });
      } else if ('symlink' in entry && typeof entry.symlink === 'string') {
        symlinks.push({ name, target: entry.symlink });
      } else {
        directories.push({ name, digest: await this.tree(entry as TreeSpec) });
      }
    }
    return this.directory({ files, directories, symlinks });
  }

  /** Uploads Command and Action; returns the action digest. */
  async action(options: {
    command: CommandInit;
    inputRoot?: Digest;
    timeoutSeconds?: number;
    doNotCache?: boolean;
    platform?: Record<string, string>;
    salt?: string;
  }): Promise<Digest> {
    const platform =
      options.platform === undefined
        ? undefined
        : {
            properties: Object.entries(options.platform)
              .sort()
              .map(([name, value]) => ({ name, value })),
          };
    const [commandDigest] = await this.upload(
      toBinary(
        CommandSchema,
        create(CommandSchema, { ...options.command, platform: options.command.platform ?? platform } as CommandInit),
      ),
    );
    const inputRoot = options.inputRoot ?? (await this.directory({}));
    const action = create(ActionSchema, {
      commandDigest,
      inputRootDigest: inputRoot,
      doNotCache: options.doNotCache ?? false,
      platform,
      salt: options.salt === undefined ? new Uint8Array() : Buffer.from(options.salt),
      ...(options.timeoutSeconds === undefined ? {} : { timeout: { seconds: BigInt(options.timeoutSeconds) } }),
    });
    const [actionDigest] = await this.upload(toBinary(ActionSchema, action));
    return actionDigest!;
  }

  /** Execute, read to the end: every Operation streamed, and the final ExecuteResponse. */
  async execute(
    actionDigest: Digest,
    request: {
      skipCacheLookup?: boolean;
      inlineStdout?: boolean;
      inlineStderr?: boolean;
      executionPolicy?: { priority: number };
    } = {},
  ) {
    const operations = await drain(
      this.clients.execution.execute({ instanceName: this.instance, actionDigest, ...request }),
    );
    return { operations, response: finalResponse(operations) };
  }

  /** Reads a CAS blob through BatchReadBlobs. */
  async read(digest: Digest | undefined): Promise<Buffer> {
    if (digest === undefined) throw new Error('no digest');
    if (digest.sizeBytes === 0n) return Buffer.alloc(0);
    const reply = await this.clients.cas.batchReadBlobs({ instanceName: this.instance, digests: [digest] });
    const entry = reply.responses[0]!;
    if (entry.status?.code !== 0) throw new Error(`read ${digest.hash}: ${entry.status?.message}`);
    return Buffer.from(entry.data);
  }
}

export function metadataOf(operation: Operation): ExecuteOperationMetadata {
  const metadata =
    operation.metadata === undefined ? undefined : anyUnpack(operation.metadata, ExecuteOperationMetadataSchema);
  if (metadata === undefined) throw new Error(`operation ${operation.name} has no ExecuteOperationMetadata`);
  return metadata;
}

export function finalResponse(operations: Operation[]): ExecuteResponse {
  const last = operations.at(-1);
  if (last === undefined || !last.done)
    throw new Error(`the stream ended without a done operation (${operations.length} received)`);
  if (last.result.case !== 'response') throw new Error('a done operation without a response');
  const response = anyUnpack(last.result.value, ExecuteResponseSchema);
  if (response === undefined) throw new Error('the response is not an ExecuteResponse');
  return response;
}

/** The MISSING subjects of a FAILED_PRECONDITION response. */
export function missingSubjects(response: ExecuteResponse): string[] {
  return (response.status?.details ?? []).flatMap((detail) => {
    const failure = anyUnpack(detail, PreconditionFailureSchema);
    return failure === undefined ? [] : failure.violations.map((v) => `${v.type} ${v.subject}`);
  });
}

/**
 * Live (not zombie) processes of a process group, from /proc. Killed orphans may wait as zombies until this
 * sandbox's init reaps them; a zombie runs nothing, so it does not count.
 */
export function liveProcessesInGroup(pgid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        return false;
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[2]) === pgid && fields[0] !== 'Z';
    })
    .map(Number);
}

/** Whether a process is alive and not a zombie. */
export function isLive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A host folder as a TreeSpec (files with their exec bits, symlinks as symlinks), to upload as an input root. */
export function treeOf(dir: string): TreeSpec {
  const spec: TreeSpec = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) spec[entry.name] = { symlink: readlinkSync(path) };
    else if (entry.isDirectory()) spec[entry.name] = treeOf(path);
    else spec[entry.name] = { content: readFileSync(path), executable: (statSync(path).mode & 0o100) !== 0 };
  }
  return spec;
}
