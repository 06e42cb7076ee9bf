/**
 * The persistent-worker pool's waiting room: an action waiting for a slot of its key listens for its own cancel
 * once, however often the pool wakes it (every release wakes every waiter, which then looks again).
 */
import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sharedIdentity } from '../../../../executor/runner/sandbox/identities.ts';
import { PersistentWorkerPool } from '../../../../executor/worker/persistent/pool.ts';
import { createLogger } from '../../../../shared/log.ts';

describe('PersistentWorkerPool', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('a waiter woken many times holds one abort listener, and a cancel still ends its wait', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'larder-pool-'));
    dirs.push(dir);
    const pool = new PersistentWorkerPool({
      dir,
      identities: sharedIdentity(null),
      maxPerKey: 1,
      maxTotal: 2,
      idleMs: 60_000,
      maxRequests: 100,
      log: createLogger('silent'),
    });
    try {
      const held = await pool.acquire('k', 'h', new AbortController().signal);
      const cancel = new AbortController();
      const waiting = pool.acquire('k', 'h', cancel.signal);
      // Each release of a slot of another key wakes the waiter, which finds nothing for 'k' and waits again.
      for (let i = 0; i < 12; i++) {
        const other = await pool.acquire('other', 'o', new AbortController().signal);
        await pool.release(other);
        await new Promise(setImmediate); // one turn of the loop: the woken waiter has looked and waits again
      }
      expect(getEventListeners(cancel.signal, 'abort').length).toBe(1);
      cancel.abort(new Error('the client cancelled'));
      await expect(waiting).rejects.toThrow('the client cancelled');
      await pool.release(held);
    } finally {
      await pool.close();
    }
  });
});
