/**
 * Whether the users actions run as can get at what larder keeps to itself: the store (every tenant's blobs), the
 * config file, the htpasswd file, keys and passwords. An action can hand anything it can open to its client, so
 * the executor checks these at start (guardPrivatePaths) and refuses, or warns, naming the path and the fix.
 *
 * Decided as the kernel decides for a process that is not root, from mode bits, owner and group: every folder on
 * the way must let the user through (x), and then the path itself is exposed if the user may read it (r) or, for
 * a folder, enter it (x): files in a folder one may enter but not list can still be opened by name, and blob names
 * are hashes anyone can compute. The owner's bits alone count for the owner and the group's alone for a member,
 * as in the kernel. Symbolic links are resolved first: the real path is the one every way in has to pass.
 * POSIX ACLs are not read (larder sets none; `getfacl -R` shows whether an operator did).
 */
import { realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ExecutionConfig } from './config/execution-options.ts';
import { LarderError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';

/** A user actions may run as: its uid, primary gid and any supplementary groups it keeps. */
export interface Identity {
  uid: number;
  gid: number;
  groups?: readonly number[];
  /** For messages: how the operator named it (`--run-as nobody`). */
  name?: string;
}

/** One path one identity can get at: `read` (r; for a folder, list it) or `traverse` (x on a folder, not r). */
export interface Exposure {
  /** The path as given. */
  path: string;
  identity: Identity;
  access: 'read' | 'traverse';
  isDirectory: boolean;
  /** The owner of the (resolved) path: who can be told to chmod it. */
  ownerUid: number;
}

interface Mode {
  mode: number;
  uid: number;
  gid: number;
  isDirectory: boolean;
}

const READ = 4;
const SEARCH = 1;

/**
 * The paths among `paths` that one of `identities` could read or traverse, one entry per path and identity. Paths
 * that do not exist are nobody's business and are left out. Each path's folders are looked at once, however many
 * identities there are (a range of per-slot uids costs arithmetic, not system calls).
 */
export async function checkUnreadable(paths: readonly string[], identities: readonly Identity[]): Promise<Exposure[]> {
  const found: Exposure[] = [];
  const modes = new Map<string, Promise<Mode>>();
  const modeOf = (path: string) => {
    let mode = modes.get(path);
    if (mode === undefined) {
      mode = stat(path).then((s) => ({ mode: s.mode, uid: s.uid, gid: s.gid, isDirectory: s.isDirectory() }));
      modes.set(path, mode);
    }
    return mode;
  };
  for (const path of paths) {
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const target = await modeOf(real);
    const folders = await Promise.all(ancestors(real).map(modeOf));
    for (const identity of identities) {
      if (!folders.every((folder) => allows(folder, identity, SEARCH))) continue;
      const access = allows(target, identity, READ)
        ? 'read'
        : target.isDirectory && allows(target, identity, SEARCH)
          ? 'traverse'
          : null;
      if (access !== null)
        found.push({ path, identity, access, isDirectory: target.isDirectory, ownerUid: target.uid });
    }
  }
  return found;
}

/** `/a/b/c` → `/`, `/a`, `/a/b`. */
function ancestors(path: string): string[] {
  const folders: string[] = [];
  for (let at = dirname(path); ; at = dirname(at)) {
    folders.unshift(at);
    if (at === dirname(at)) return folders;
  }
}

/** The kernel's discretionary check for a user without capabilities (root passes every check). */
function allows(info: Mode, identity: Identity, bit: number): boolean {
  if (identity.uid === 0) return true;
  const inGroup = info.gid === identity.gid || (identity.groups?.includes(info.gid) ?? false);
  const shift = info.uid === identity.uid ? 6 : inGroup ? 3 : 0;
  return ((info.mode >> shift) & bit) !== 0;
}

export interface PrivatePaths {
  /** Folders no action may read or enter (the disk store): the executor does not start while one can. */
  required: readonly string[];
  /** Files that should be private (config, htpasswd, TLS key, passwords): a warning for each one that is not. */
  advised: readonly string[];
}

/**
 * Refuses to start (invalid_argument, naming the path and the command that fixes it) when an identity could get
 * into a required path, and warns for each advised one it could read.
 */
export async function guardPrivatePaths(
  paths: PrivatePaths,
  identities: readonly Identity[],
  log: Logger,
): Promise<void> {
  if (identities.length === 0) return;
  for (const exposure of await checkUnreadable(paths.advised, identities)) {
    log.warn(`${exposure.path} is readable by ${describe(exposure.identity)}, who runs actions: ${fix(exposure)}`, {
      path: exposure.path,
    });
  }
  const [refused] = await checkUnreadable(paths.required, identities);
  if (refused !== undefined) {
    const how = refused.access === 'read' ? 'read' : 'enter';
    throw new LarderError(
      'invalid_argument',
      `${refused.path} holds every client's blobs and ${describe(refused.identity)}, who runs actions, can ${how} it: ` +
        `${fix(refused)}, then start again`,
    );
  }
}

/** How the operator named the users actions run as (`--run-as nobody`), for messages. */
export function runAsName(config: Pick<ExecutionConfig, 'runAs' | 'runAsUids'>): string {
  if (config.runAs !== '') return `--run-as ${config.runAs}`;
  return config.runAsUids === null
    ? 'larder itself'
    : `--run-as-uids ${config.runAsUids.first}-${config.runAsUids.last}`;
}

function describe(identity: Identity): string {
  const ids = `uid ${identity.uid}, gid ${identity.gid}`;
  return identity.name === undefined ? ids : `${identity.name} (${ids})`;
}

/** The command that makes the path private to the user larder runs as. */
function fix(exposure: Exposure): string {
  const mode = exposure.isDirectory ? '700' : '600';
  const chmod = `chmod ${mode} ${exposure.path}`;
  if (exposure.ownerUid !== exposure.identity.uid) return `run \`${chmod}\``;
  // The action's own user owns it: no mode keeps an owner out. It must belong to the user larder runs as.
  const self = `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`;
  const recursive = exposure.isDirectory ? '-R ' : '';
  return `it belongs to that user; run \`chown ${recursive}${self} ${exposure.path} && ${chmod}\``;
}
