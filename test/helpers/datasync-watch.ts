/** Counts FileHandle.datasync calls in this process (every FileHandle shares one prototype), until restored. */
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { vi } from 'vitest';

export interface DatasyncWatch {
  /** Calls so far. */
  calls(): number;
  /** Resolves at the first call. */
  first: Promise<void>;
  restore(): void;
}

/** `scratchDir`: a folder the watch may create a file in, to reach the prototype. */
export async function watchDatasync(scratchDir: string): Promise<DatasyncWatch> {
  const probe = await open(join(scratchDir, 'datasync-probe'), 'w');
  const prototype = Object.getPrototypeOf(probe) as FileHandle;
  await probe.close();
  const datasync = prototype.datasync;
  let called!: () => void;
  const first = new Promise<void>((resolve) => (called = resolve));
  const spy = vi.spyOn(prototype, 'datasync').mockImplementation(function (this: FileHandle) {
    called();
    return datasync.call(this);
  });
  return { calls: () => spy.mock.calls.length, first, restore: () => spy.mockRestore() };
}
