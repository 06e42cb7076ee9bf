/**
 * The namespace sandbox every local action and persistent worker runs in, built with bubblewrap (`bwrap`):
 * Debian's package, the tool Flatpak runs every application in, and it does exactly the system calls this needs
 * (user, mount, PID, IPC, UTS, cgroup and network namespaces, pivot_root, no_new_privs) unprivileged or as root.
 * Writing them ourselves would mean native code in a TypeScript project for no gain.
 *
 * Inside, an action sees: the host's system folders read-only (`/usr`, `/bin`, `/lib*`, `/sbin`, `/etc` minus the
 * paths the server hides, `/opt`), a fresh `/proc` of its own PID namespace, a minimal `/dev`, private empty `/tmp`
 * and `/dev/shm`, and its own execution root, the one writable place, at the same path as on the host. No other
 * action's folders, no store, no home folders, no network (only a loopback of its own) unless it asked and the
 * server allows it. bwrap's own init is PID 1 of the namespace: when the command exits, or bwrap is killed, the
 * kernel kills every process left in the namespace, whatever they did with setsid or double forks.
 *
 * With `rootIsInput`, the input root itself becomes `/` (what BuildStream and other buildbox clients expect: a
 * whole sysroot as the input root, commands with absolute paths into it), with /proc, /dev and /tmp on top.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import { LarderError } from '../../../shared/errors.ts';
import type { Identity } from './identities.ts';

export interface SandboxSpec {
  /** The action's execution root: bound read-write at the same path (or as `/` with rootIsInput). */
  readonly execRoot: string;
  /** Absolute working directory (inside execRoot on the host). */
  readonly cwd: string;
  /** The host's network; otherwise a network namespace of its own with only a loopback. */
  readonly network: boolean;
  /** The execution root is the file system root (`filesystem-root=input`). */
  readonly rootIsInput: boolean;
}

/** What an input root used as `/` gets mounted on top of it: fresh ones, not the input's own. */
export const INPUT_ROOT_MOUNT_POINTS = ['proc', 'dev', 'tmp'];

/** The folders of the host every sandbox sees read-only, when they exist (symlinks such as /bin → usr/bin kept). */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt'];

/** Files of /etc that are not an action's business, hidden even where their modes would let it read them. */
const HIDDEN_SYSTEM_FILES = ['/etc/shadow', '/etc/gshadow', '/etc/shadow-', '/etc/gshadow-', '/etc/sudoers'];

export class Bubblewrap {
  /** The mount arguments of the host's system folders, computed once (they do not change under a running server). */
  private readonly systemMounts: string[];

  /**
   * @param bwrap the bubblewrap binary
   * @param hidden paths of the host an action must not see even where they lie in a system folder (the server's
   *   config file, htpasswd file, TLS key): a file is covered by an empty one, a folder by an empty tmpfs.
   */
  constructor(
    readonly bwrap: string,
    hidden: readonly string[],
  ) {
    this.systemMounts = [...mountsOf(SYSTEM_PATHS), ...hideArgs([...HIDDEN_SYSTEM_FILES, ...hidden])];
  }

  /** The command line that runs `argv` in a sandbox of `spec`; spawn it as the slot's uid (or the server's). */
  argv(spec: SandboxSpec, argv: readonly string[], identity: Identity | null): string[] {
    const args = [
      this.bwrap,
      '--unshare-all',
      ...(spec.network ? ['--share-net'] : []),
      '--die-with-parent',
      '--new-session',
      '--cap-drop',
      'ALL',
      '--hostname',
      'localhost',
      // The uid and gid the action sees are the ones it has on the host, so files it writes read the same inside.
      ...(identity === null ? [] : ['--uid', String(identity.uid), '--gid', String(identity.gid)]),
    ];
    if (spec.rootIsInput) args.push('--bind', spec.execRoot, '/');
    else args.push(...this.systemMounts);
    args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/dev/shm');
    if (!spec.rootIsInput) args.push('--bind', spec.execRoot, spec.execRoot);
    args.push('--chdir', spec.rootIsInput ? insideRoot(spec) : spec.cwd, '--', ...argv);
    return args;
  }
}

/** The working directory as the action sees it when its input root is `/`. */
function insideRoot(spec: SandboxSpec): string {
  const relative = spec.cwd.slice(spec.execRoot.length);
  return relative === '' ? '/' : relative;
}

function mountsOf(paths: readonly string[]): string[] {
  const args: string[] = [];
  for (const path of paths) {
    const info = lstatOrNull(path);
    if (info === null) continue;
    const target = info.isSymbolicLink() ? readlinkOrNull(path) : null;
    if (target !== null) args.push('--symlink', target, path);
    // A folder, or what a process under qemu's -L prefix sees of one (lstat and readlink disagree there):
    // bubblewrap, a host binary, binds whatever the path is on the host.
    else if (statOrNull(path)?.isDirectory()) args.push('--ro-bind', path, path);
  }
  return args;
}

function hideArgs(paths: readonly string[]): string[] {
  const args: string[] = [];
  for (const path of paths) {
    if (!SYSTEM_PATHS.some((root) => path.startsWith(`${root}/`))) continue; // not visible in the sandbox anyway
    const info = statOrNull(path);
    if (info === null) continue;
    if (info.isDirectory()) args.push('--tmpfs', path);
    else args.push('--ro-bind', '/dev/null', path);
  }
  return args;
}

function readlinkOrNull(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function lstatOrNull(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function statOrNull(path: string) {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** The bubblewrap binary on PATH, or null. */
export function findBubblewrap(): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const candidate = `${dir || '.'}/bwrap`;
    if (statOrNull(candidate)?.isFile()) return candidate;
  }
  return null;
}

/**
 * Runs `true` in a full sandbox as `identity`, the way actions will run, so a kernel or host that cannot give
 * one (user namespaces disabled, bwrap missing, a seccomp policy that blocks them) stops the server at start with
 * the reason, rather than failing every action.
 */
export function probeSandbox(sandbox: Bubblewrap, execRoot: string, identity: Identity | null): void {
  const argv = sandbox.argv(
    { execRoot, cwd: execRoot, network: false, rootIsInput: false },
    ['/bin/sh', '-c', ':'],
    identity,
  );
  try {
    execFileSync(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 20_000,
      ...(identity === null ? {} : { uid: identity.uid, gid: identity.gid }),
    });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    throw new LarderError(
      'invalid_argument',
      `the action sandbox does not work on this host (${stderr || (err as Error).message}): it needs bubblewrap ` +
        '(apt-get install bubblewrap) and unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, ' +
        'user.max_user_namespaces > 0). Only if every client is trusted: --sandbox off',
    );
  }
}
