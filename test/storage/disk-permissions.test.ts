// The disk store keeps its blobs to the user larder runs as: actions run as other users (--run-as), and an action
// that can read the store can read every tenant's blobs. New folders are 0700 and new files 0600, and a store made
// by an older larder (0755 folders, 0644 blobs) is closed at open by its top folder. Checked with the modes and
// with a real process running as nobody, which must not be able to read a blob.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blobKey } from '../../shared/digest.ts';
import type { Logger } from '../../shared/log.ts';
import { DiskStore } from '../../shared/storage/disk.ts';
import { streamOf } from '../../shared/storage/streams.ts';
import { sha256 } from '../helpers/http.ts';
import { failUnlessRoot, needsRoot } from '../helpers/tools.ts';

/** The checks by a real process running as nobody need root: in CI they always run (and fail when not root). */
const READS_AS_NOBODY = 'the checks that read as nobody need root';
const asNobody = needsRoot(READS_AS_NOBODY);

/** A folder anyone may enter, like a store's parent usually is (mkdtemp makes 0700 ones). */
function openParent(): string {
  const dir = mkdtempSync(join(tmpdir(), 'larder-disk-perms-'));
  chmodSync(dir, 0o755);
  return dir;
}

/** Every folder and file under `root`, with its permission bits. */
function modes(root: string): Array<{ path: string; dir: boolean; mode: number }> {
  const found = [{ path: root, dir: true, mode: statSync(root).mode & 0o777 }];
  for (const entry of readdirSync(root, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    found.push({ path, dir: entry.isDirectory(), mode: statSync(path).mode & 0o777 });
  }
  return found;
}

/** Whether a real process running as nobody can read the file (as an action would try). */
function nobodyReads(path: string): boolean {
  failUnlessRoot(READS_AS_NOBODY); // else the spawn fails, and "cannot read" would pass for the wrong reason
  return spawnSync('/bin/cat', [path], { uid: 65534, gid: 65534, stdio: 'ignore' }).status === 0;
}

const parents: string[] = [];
afterAll(() => {
  for (const dir of parents) rmSync(dir, { recursive: true, force: true });
});

describe('disk store permissions', () => {
  const cas = (instance: string, data: Uint8Array) => blobKey(instance, 'cas', sha256(data));

  it('makes every folder 0700 and every blob 0600: small, streamed and adopted, in every instance', async () => {
    const parent = openParent();
    parents.push(parent);
    const path = join(parent, 'store');
    const store = await DiskStore.open({ path, maxBytes: 1 << 26 });
    const small = randomBytes(100);
    const large = randomBytes(300_000);
    const adopted = randomBytes(200_000);
    await store.put(cas('tenant-a', small), small, small.length);
    await store.put(cas('tenant-b', large), streamOf(large), large.length);
    await store.put(blobKey('tenant-b', 'ac', sha256(small)), streamOf(small), small.length);
    // An upload spooled by the executor (created with the process's default mode) and moved in whole.
    const spooled = join(path, 'spooled');
    writeFileSync(spooled, adopted, { mode: 0o644 });
    expect(await store.adopt(cas('tenant-c', adopted), spooled, adopted.length)).toBe(true);

    const all = modes(path);
    await store.close();
    expect(all.filter((e) => e.dir).length).toBeGreaterThan(8);
    // Four blobs, this process's ledger, and the empty temp file made ahead for the next upload (temp-files.ts).
    expect(all.filter((e) => !e.dir).length).toBe(6);
    for (const entry of all) expect(entry.mode.toString(8), entry.path).toBe(entry.dir ? '700' : '600');
  });

  it('closes a store made by an older larder (0755 folders, 0644 blobs) at open, by its top folders', async () => {
    const parent = openParent();
    parents.push(parent);
    const path = join(parent, 'store');
    const blob = randomBytes(100);
    const first = await DiskStore.open({ path, maxBytes: 1 << 20 });
    await first.put(cas('other-tenant', blob), blob, blob.length);
    await first.close();
    // As an older larder left it.
    for (const entry of modes(path)) chmodSync(entry.path, entry.dir ? 0o755 : 0o644);
    const blobPath = modes(path).find((e) => !e.dir && e.path.includes('/blobs/'))!.path;
    if (asNobody) expect(nobodyReads(blobPath), blobPath).toBe(true); // the exposure this fixes

    const warnings: string[] = [];
    const infos: string[] = [];
    const log = {
      info: (message: string) => infos.push(message),
      warn: (message: string) => warnings.push(message),
      debug: () => {},
    } as unknown as Logger;
    const second = await DiskStore.open({ path, maxBytes: 1 << 20, log });
    await second.close();
    for (const top of [path, join(path, 'blobs'), join(path, 'tmp'), join(path, 'ledger')])
      expect((statSync(top).mode & 0o777).toString(8), top).toBe('700');
    expect(infos.join('\n')).toContain(`disk: made ${path} private to its owner (it was 0755, now 0700)`);
    expect(warnings).toEqual([]);
    if (asNobody) expect(nobodyReads(blobPath), blobPath).toBe(false);
  });

  it.runIf(asNobody)(
    'keeps a blob from a process running as another user, even if the store folder is opened again',
    async () => {
      const parent = openParent();
      parents.push(parent);
      const path = join(parent, 'store');
      const store = await DiskStore.open({ path, maxBytes: 1 << 20 });
      const blob = randomBytes(100);
      await store.put(cas('', blob), blob, blob.length);
      await store.close();
      const blobPath = modes(path).find((e) => !e.dir && e.path.includes('/blobs/'))!.path;
      expect(nobodyReads(blobPath), blobPath).toBe(false);
      // An operator who opens the top folder again still leaves the blob closed: its own folders and mode hold.
      chmodSync(path, 0o755);
      expect(nobodyReads(blobPath), blobPath).toBe(false);
    },
  );
});
