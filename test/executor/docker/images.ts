/**
 * Root file systems for the test images, as tarballs for `docker import` (no registry is reachable here):
 *
 * - `busybox`: Debian's static busybox with every applet linked in /bin, plus the host's /bin/bash and the
 *   libraries `ldd` lists (Bazel 4.2.3 runs genrules with /bin/bash -c; real build images have bash, so the
 *   image gets one rather than Bazel a different --shell_executable), the host's `ipcmk` (util-linux: SysV IPC
 *   objects, which busybox cannot make, for the IPC-leak test), and /etc/larder-image naming the image.
 * - `node`: the same plus the host's node binary and its libraries, for persistent workers in containers.
 *
 * Building the node one takes seconds, so tarballs are cached in /var/tmp/larder-test-images, keyed by the
 * recipe and the host binaries' size and mtime; a new tarball is written under a temporary name and renamed, so
 * test files building at once never read a half-written one.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

export type ImageName = 'busybox' | 'node';

const CACHE = '/var/tmp/larder-test-images';
/** Bump when the recipe changes. */
const RECIPE = 4;
const BUSYBOX = '/bin/busybox';
const BASH = '/bin/bash';
const IPCMK = '/usr/bin/ipcmk';

/** The marker file's content in image `name`. */
export function markerOf(name: ImageName): string {
  return `larder-test-${name}\n`;
}

export async function imageTarball(name: ImageName): Promise<string> {
  const binaries = name === 'node' ? [BUSYBOX, BASH, IPCMK, process.execPath] : [BUSYBOX, BASH, IPCMK];
  const key = createHash('sha256')
    .update(JSON.stringify([RECIPE, name, binaries.map((b) => [b, statSync(b).size, statSync(b).mtimeMs])]))
    .digest('hex')
    .slice(0, 16);
  const tarball = join(CACHE, `${name}-${key}.tar`);
  if (existsSync(tarball)) return tarball;
  mkdirSync(CACHE, { recursive: true });
  const root = mkdtempSync(join(CACHE, `${name}-root-`));
  try {
    buildRoot(root, name, binaries);
    const partial = `${tarball}.${process.pid}.partial`;
    execFileSync('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-cf', partial, '.']);
    renameSync(partial, tarball);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return tarball;
}

function buildRoot(root: string, name: ImageName, binaries: string[]): void {
  for (const dir of ['bin', 'etc', 'tmp', 'usr/bin', 'usr/local/bin']) mkdirSync(join(root, dir), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a !== '' && a !== 'busybox');
  for (const applet of applets) symlinkSync('busybox', join(root, 'bin', applet));
  // Scripts start with `#!/usr/bin/env node` (the test workspace's workers do), as on any real image.
  symlinkSync('/bin/busybox', join(root, 'usr/bin/env'));
  writeFileSync(join(root, 'etc/larder-image'), markerOf(name));
  writeFileSync(
    join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  for (const binary of binaries.filter((b) => b !== BUSYBOX)) {
    const target = binary === process.execPath ? join(root, 'usr/local/bin/node') : join(root, binary);
    rmSync(target, { force: true });
    copyFileSync(binary, target);
    chmodSync(target, 0o755);
    for (const lib of sharedLibraries(binary)) {
      const copy = join(root, lib);
      if (existsSync(copy)) continue;
      mkdirSync(dirname(copy), { recursive: true });
      copyFileSync(lib, copy); // follows symlinks: the file under the name the loader asks for
    }
  }
}

/** Absolute paths of the libraries (and loader) `ldd` lists for a dynamic binary. */
function sharedLibraries(binary: string): string[] {
  const text = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...text.matchAll(/(\/\S+)\s+\(0x/g)].map((m) => m[1]!);
}
