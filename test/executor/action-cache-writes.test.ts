// The action cache writes of in-process workers, which answer before their write is done: a lookup of a key being
// written waits for the write, and a failed write leaves no wait behind.
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { lookupActionResult } from '../../executor/services/action-cache.ts';
import { ActionCacheWrites } from '../../executor/services/action-cache-writes.ts';
import { type BlobKey, blobKey } from '../../shared/digest.ts';
import { createLogger } from '../../shared/log.ts';
import {
  type ActionResult,
  ActionResultSchema,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import type { BlobBody } from '../../shared/storage/store.ts';

/** A memory store whose puts wait until `release` is called (a disk's fdatasync taking its time), or fail. */
class SlowStore extends MemoryStore {
  release!: () => void;
  fail = false;
  readonly #gate = new Promise<void>((resolve) => (this.release = resolve));

  override async put(key: BlobKey, body: BlobBody, size: number): Promise<void> {
    await this.#gate;
    if (this.fail) throw new Error('disk on fire');
    return super.put(key, body, size);
  }
}

const hash = 'a'.repeat(64);
const key = blobKey('', 'ac', hash);
const log = createLogger('silent');

describe('ActionCacheWrites', () => {
  it('makes a lookup of the key being written wait for the write, and find the result', async () => {
    const store = new SlowStore({ maxBytes: 1 << 20 });
    const writes = new ActionCacheWrites(store);
    const written = writes.write(key, create(ActionResultSchema, { exitCode: 0, stdoutRaw: Buffer.from('hi') }));
    const deps = { store, log, validateActionResults: false, actionCacheWrites: writes };
    let found: unknown = 'not yet';
    const lookup = lookupActionResult(deps, '', hash).then((result) => (found = result));
    // Another key is not held up by it.
    expect(await lookupActionResult(deps, '', 'b'.repeat(64))).toBeNull();
    expect(found).toBe('not yet');
    store.release();
    await written;
    await lookup;
    expect(Buffer.from((found as ActionResult).stdoutRaw).toString()).toBe('hi');
  });

  it('lets a lookup go on after a failed write (a miss), and rejects the write itself', async () => {
    const store = new SlowStore({ maxBytes: 1 << 20 });
    store.fail = true;
    const writes = new ActionCacheWrites(store);
    const written = writes.write(key, create(ActionResultSchema, { exitCode: 0 }));
    const lookup = lookupActionResult(
      { store, log, validateActionResults: false, actionCacheWrites: writes },
      '',
      hash,
    );
    store.release();
    await expect(written).rejects.toThrow('disk on fire');
    expect(await lookup).toBeNull();
    // Nothing left to wait for.
    await writes.settled(key);
  });
});
