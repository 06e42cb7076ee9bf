// Action folders made ahead: what a spare is, and that a finished folder's deletion makes the next spare in the
// same request to the file-system thread.
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActionFolders } from '../../../executor/worker/action-folders.ts';
import { type FileSystemOp, FileSystemThread } from '../../../executor/worker/file-system-thread.ts';
import { tempDirs } from './helpers.ts';

const freshDir = tempDirs();

/** A real file-system thread that records each batch it is asked to apply. */
class RecordingThread extends FileSystemThread {
  readonly batches: Array<readonly FileSystemOp[]> = [];
  override apply(ops: readonly FileSystemOp[]) {
    this.batches.push(ops);
    return super.apply(ops);
  }
}

const thread = new RecordingThread();
afterAll(() => thread.close());

/** Spares are made in the background: waits (bounded, on the thread's answers) until `count` are on disk. */
async function spares(dir: string, count: number): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    await thread.apply([]);
    const ready = readdirSync(dir);
    if (ready.length >= count) return ready;
  }
  throw new Error(`fewer than ${count} spare folders in ${dir}`);
}

describe('ActionFolders', () => {
  it("retires a finished action's folder and makes the spare that replaces it in one request", async () => {
    const actions = join(freshDir(), 'actions');
    const removed = join(freshDir(), 'removed');
    mkdirSync(actions);
    mkdirSync(removed);
    const folders = new ActionFolders(actions, thread, 2);
    // The first take makes its own folder and the spares.
    const first = await folders.take();
    expect((await spares(actions, 3)).length).toBe(3);
    // What a finished action leaves, moved out of the slot's reach (run-action.ts).
    const finished = join(removed, 'finished');
    mkdirSync(join(finished, 'root', 'out'), { recursive: true });
    writeFileSync(join(finished, 'root', 'out', 'f'), 'x', { mode: 0o444 });

    thread.batches.length = 0;
    const taken = await folders.take();
    await folders.retire(finished);
    // Taking a spare asked the thread for nothing; the retirement was one request: delete, then the new spare.
    expect(thread.batches.map((ops) => ops.map((op) => op.op))).toEqual([['remove', 'mkdir', 'mkdir']]);
    expect(readdirSync(removed)).toEqual([]);
    const ready = readdirSync(actions).filter((name) => ![first, taken].includes(join(actions, name)));
    expect(ready.length).toBe(2);
    for (const name of ready) {
      expect(statSync(join(actions, name)).mode & 0o777).toBe(0o711);
      expect(statSync(join(actions, name, 'root')).mode & 0o777).toBe(0o700);
      expect(readdirSync(join(actions, name))).toEqual(['root']);
    }
    folders.close();
  });

  it('makes the spares a burst used up in one request', async () => {
    const actions = join(freshDir(), 'actions');
    mkdirSync(actions);
    const folders = new ActionFolders(actions, thread, 3);
    thread.batches.length = 0;
    // None ready: this take makes its own folder, and the three spares together.
    await folders.take();
    expect((await spares(actions, 4)).length).toBe(4);
    const made = thread.batches.filter((ops) => ops.length > 0).map((ops) => ops.length);
    expect(made.sort()).toEqual([2, 6]);
    folders.close();
  });
});
