// checkUnreadable against the kernel itself: for files and folders of every owner, group and mode that matter,
// what it reports must be what a real process running as that user can do (test -r, and test -x on a folder).
// The files are chowned to another user, so this needs root (as CI runs).
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkUnreadable, guardPrivatePaths, type Identity } from '../../executor/private-paths.ts';
import type { Logger } from '../../shared/log.ts';
import { failUnlessRoot, needsRoot } from '../helpers/tools.ts';

const NOBODY: Identity = { uid: 65534, gid: 65534, name: 'nobody' };
/** A user of the kernel's that is nobody's group-mate: another uid, same primary group. */
const GROUP_MATE: Identity = { uid: 65533, gid: 65534 };

const CHOWNS = 'these tests chown files to other users';

/** What the kernel lets `identity` do with `path`: read it, or (a folder) enter it. */
function kernelSays(path: string, identity: Identity): 'read' | 'traverse' | null {
  const test = (script: string) =>
    spawnSync('/bin/sh', ['-c', script, 'sh', path], { uid: identity.uid, gid: identity.gid }).status === 0;
  if (test('test -r "$1"')) return 'read';
  return test('test -d "$1" && test -x "$1"') ? 'traverse' : null;
}

describe.runIf(needsRoot(CHOWNS))('checkUnreadable agrees with the kernel', () => {
  beforeAll(() => failUnlessRoot(CHOWNS));
  const root = mkdtempSync(join(tmpdir(), 'larder-private-'));
  chmodSync(root, 0o755);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const made = (name: string, kind: 'file' | 'dir', mode: number, uid = 0, gid = 0, inside = root): string => {
    const path = join(inside, name);
    if (kind === 'dir') mkdirSync(path);
    else writeFileSync(path, 'secret');
    chownSync(path, uid, gid);
    chmodSync(path, mode);
    return path;
  };

  type Verdict = 'read' | 'traverse' | null;
  /** Each case: what nobody and their group-mate (another uid, nobody's group) can do, and how to make it. */
  const cases: Record<string, [[Verdict, Verdict], () => string]> = {
    'a file 0644 of root': [['read', 'read'], () => made('f644', 'file', 0o644)],
    'a file 0600 of root': [[null, null], () => made('f600', 'file', 0o600)],
    'a file 0640 in their group': [['read', 'read'], () => made('f640g', 'file', 0o640, 0, 65534)],
    // The group's bits alone count for a member, even when others may read.
    'a file 0604 in their group': [[null, null], () => made('f604g', 'file', 0o604, 0, 65534)],
    // The owner's bits alone count for the owner.
    'a file 0066 nobody owns': [[null, 'read'], () => made('f066o', 'file', 0o066, 65534, 0)],
    'a file 0400 nobody owns': [['read', null], () => made('f400o', 'file', 0o400, 65534, 65534)],
    'a folder 0755 of root': [['read', 'read'], () => made('d755', 'dir', 0o755)],
    'a folder 0711 of root': [['traverse', 'traverse'], () => made('d711', 'dir', 0o711)],
    'a folder 0700 of root': [[null, null], () => made('d700', 'dir', 0o700)],
    'a folder 0750 in their group': [['read', 'read'], () => made('d750g', 'dir', 0o750, 0, 65534)],
    'a file 0644 in a folder 0700 of root': [
      [null, null],
      () => made('inner', 'file', 0o644, 0, 0, made('closed', 'dir', 0o700)),
    ],
    'a file 0644 in a folder 0711 of root': [
      ['read', 'read'],
      () => made('inner', 'file', 0o644, 0, 0, made('passable', 'dir', 0o711)),
    ],
    'a link to a file 0644 in a folder 0700': [
      [null, null],
      () => {
        const target = made('inner', 'file', 0o644, 0, 0, made('closed2', 'dir', 0o700));
        symlinkSync(target, join(root, 'link-closed'));
        return join(root, 'link-closed');
      },
    ],
    'a link to a file 0644 of root': [
      ['read', 'read'],
      () => {
        symlinkSync(made('f644b', 'file', 0o644), join(root, 'link-open'));
        return join(root, 'link-open');
      },
    ],
    'a path that does not exist': [[null, null], () => join(root, 'missing')],
  };

  for (const [name, [expected, make]] of Object.entries(cases)) {
    it(`${name}: ${expected.join(', ')}`, async () => {
      const path = make();
      const identities = [NOBODY, GROUP_MATE];
      const kernel = identities.map((identity) => kernelSays(path, identity));
      const reported = await Promise.all(
        identities.map(async (identity) => (await checkUnreadable([path], [identity]))[0]?.access ?? null),
      );
      expect(kernel).toEqual(expected);
      expect(reported).toEqual(kernel);
    });
  }

  it('counts supplementary groups, and root reads everything', async () => {
    const path = made('f640x', 'file', 0o640, 0, 4242);
    expect(await checkUnreadable([path], [NOBODY])).toEqual([]);
    const withGroup = { ...NOBODY, groups: [4242] };
    expect((await checkUnreadable([path], [withGroup])).map((e) => e.access)).toEqual(['read']);
    expect((await checkUnreadable([made('f000', 'file', 0o000)], [{ uid: 0, gid: 0 }])).length).toBe(1);
  });

  it('reports each path and identity once, over many identities', async () => {
    const open = made('many-open', 'file', 0o644);
    const closed = made('many-closed', 'file', 0o600);
    const identities = Array.from({ length: 1000 }, (_, i) => ({ uid: 100_000 + i, gid: 100_000 + i }));
    const found = await checkUnreadable([open, closed], identities);
    expect(found.length).toBe(1000);
    expect(new Set(found.map((e) => e.path))).toEqual(new Set([open]));
  });

  describe('guardPrivatePaths', () => {
    const warnings: string[] = [];
    const log = { warn: (message: string) => warnings.push(message) } as unknown as Logger;

    it('refuses a store folder they can enter, naming it and the chmod', async () => {
      const store = made('store-open', 'dir', 0o711);
      await expect(guardPrivatePaths({ required: [store], advised: [] }, [NOBODY], log)).rejects.toThrow(
        `${store} holds every client's blobs and nobody (uid 65534, gid 65534), who runs actions, can enter it: run \`chmod 700 ${store}\``,
      );
    });

    it('refuses a store folder they own, asking for a chown', async () => {
      const store = made('store-theirs', 'dir', 0o700, 65534, 65534);
      await expect(guardPrivatePaths({ required: [store], advised: [] }, [NOBODY], log)).rejects.toThrow(
        `run \`chown -R 0:0 ${store} && chmod 700 ${store}\``,
      );
    });

    it('passes a private store and warns for a readable secret', async () => {
      warnings.length = 0;
      const store = made('store-private', 'dir', 0o700);
      const htpasswd = made('htpasswd', 'file', 0o644);
      const key = made('key.pem', 'file', 0o600);
      await guardPrivatePaths({ required: [store], advised: [htpasswd, key] }, [NOBODY], log);
      expect(warnings).toEqual([
        `${htpasswd} is readable by nobody (uid 65534, gid 65534), who runs actions: run \`chmod 600 ${htpasswd}\``,
      ]);
    });

    it('does nothing without identities (actions run as larder itself)', async () => {
      await guardPrivatePaths({ required: [made('store-any', 'dir', 0o777)], advised: [] }, [], log);
    });
  });
});
