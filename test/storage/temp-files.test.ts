// The disk store's temp files (shared/storage/temp-files.ts): one is created ahead so that a small write skips the
// create; whatever is handed out must be a new, empty, private file that is still in the folder, and closing must
// leave nothing behind.
import { closeSync, mkdirSync, readdirSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isLarderError } from '../../shared/errors.ts';
import { TempFiles } from '../../shared/storage/temp-files.ts';
import { tempDir } from '../helpers/edge-process.ts';

const dirs: Array<{ remove: () => void }> = [];
const freshDir = () => {
  const dir = tempDir('larder-temps-');
  dirs.push(dir);
  return dir.path;
};
afterAll(() => {
  for (const d of dirs) d.remove();
});

describe('temp files', () => {
  it('hands out new, empty, private files of its folder, each one once', async () => {
    const dir = freshDir();
    const temps = new TempFiles(dir);
    const taken = [];
    for (let i = 0; i < 5; i++) taken.push(await temps.take());
    expect(new Set(taken.map((f) => f.path)).size).toBe(5);
    for (const file of taken) {
      expect(file.path.startsWith(`${dir}/`)).toBe(true);
      const stats = statSync(file.path);
      expect([stats.size, stats.mode & 0o777]).toEqual([0, 0o600]);
      writeSync(file.fd, 'x');
      closeSync(file.fd);
    }
    await temps.close();
    // Only what was handed out is left: the file created ahead went with close.
    expect(readdirSync(dir).sort()).toEqual(taken.map((f) => f.path.slice(dir.length + 1)).sort());
  });

  it('closes and removes the file it created ahead, and creates none after', async () => {
    const dir = freshDir();
    const temps = new TempFiles(dir);
    const file = await temps.take();
    unlinkSync(file.path);
    closeSync(file.fd);
    expect(readdirSync(dir)).toHaveLength(1); // the one made ahead
    await temps.close();
    expect(readdirSync(dir)).toEqual([]);
    const late = await temps.take(); // still works, with a file made now
    closeSync(late.fd);
    unlinkSync(late.path);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('hands a take made while it closes a file of its own, not the one it removes', async () => {
    const dir = freshDir();
    const temps = new TempFiles(dir);
    const first = await temps.take(); // and one is made ahead
    closeSync(first.fd);
    const closing = temps.close();
    const file = await temps.take();
    await closing;
    expect(statSync(file.path).isFile()).toBe(true);
    writeSync(file.fd, 'x'); // still open: close did not take it
    closeSync(file.fd);
  });

  it('never hands out a file made ahead that was removed from the folder since', async () => {
    const dir = freshDir();
    const temps = new TempFiles(dir);
    closeSync((await temps.take()).fd);
    for (const name of readdirSync(dir)) rmSync(join(dir, name)); // someone empties the tmp folder
    const file = await temps.take();
    expect(statSync(file.path).isFile()).toBe(true);
    closeSync(file.fd);
    await temps.close();
  });

  it('rejects with a disk error when the folder cannot take a new file, and recovers once it can', async () => {
    const dir = join(freshDir(), 'gone');
    const temps = new TempFiles(dir);
    const failed = await temps.take().then(
      () => null,
      (err: unknown) => err,
    );
    expect(isLarderError(failed, 'internal')).toBe(true);
    expect((failed as Error).message).toBe('disk: create failed: ENOENT');
    mkdirSync(dir);
    const file = await temps.take();
    expect(statSync(file.path).isFile()).toBe(true);
    closeSync(file.fd);
    await temps.close();
  });
});
