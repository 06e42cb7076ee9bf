// The partial-upload area: what is kept for resuming, and the three bounds (bytes, count, idle time).
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PartialUploads, type PartialUploadsOptions } from '../../../executor/bytestream/partial-uploads.ts';
import { watchDatasync } from '../../helpers/datasync-watch.ts';

describe('PartialUploads', () => {
  let parentDir: string;
  let now = 0;
  let uploads: PartialUploads;
  const open = async (options: Partial<PartialUploadsOptions> = {}) => {
    uploads = await PartialUploads.open({
      parentDir,
      maxBytes: 100,
      maxUploads: 2,
      idleMs: 1000,
      minBlobBytes: 10,
      now: () => now,
      ...options,
    });
    return uploads;
  };
  const bytes = (n: number) => new Uint8Array(n).fill(7);
  const read = async (stream: ReadableStream<Uint8Array>) => {
    let total = 0;
    for await (const chunk of stream) total += chunk.byteLength;
    return total;
  };

  beforeEach(() => {
    parentDir = mkdtempSync(join(tmpdir(), 'larder-partials-'));
    now = 1_000_000;
  });
  afterEach(async () => {
    await uploads?.close();
    rmSync(parentDir, { recursive: true, force: true });
  });

  it('keeps an interrupted upload and hands its bytes to the resuming Write', async () => {
    await open();
    const first = (await uploads.begin('up/1', 50, 0))!;
    await first.append(bytes(20));
    expect(uploads.isActive('up/1')).toBe(true);
    await first.keep();
    expect(uploads.isActive('up/1')).toBe(false);
    expect(uploads.committed('up/1')).toBe(20);

    const second = (await uploads.begin('up/1', 50, 20))!;
    expect(second.resumedFrom).toBe(20);
    expect(await read(second.readKept())).toBe(20);
    await second.append(bytes(30));
    await second.discard();
    expect(uploads.committed('up/1')).toBe(0);
  });

  it('syncs a pinned recording ahead while it grows, and hands it over whole; an unpinned one is never synced', async () => {
    await open({ maxBytes: 64 << 20 });
    const mib = new Uint8Array(1 << 20).fill(3);
    const syncs = await watchDatasync(parentDir);
    try {
      const unpinned = (await uploads.begin('up/unpinned', 10 << 20, 0))!;
      for (let i = 0; i < 6; i++) await unpinned.append(mib);
      await unpinned.discard();
      expect(syncs.calls()).toBe(0);

      const pinned = (await uploads.begin('up/pinned', 6 << 20, 0))!;
      await pinned.pin();
      for (let i = 0; i < 6; i++) await pinned.append(mib);
      expect(syncs.calls()).toBe(1); // started at 4 MiB, before the upload ended
      const file = await pinned.complete();
      expect(syncs.calls()).toBe(2); // and the rest, before the file is handed over
      expect(file.bytes).toBe(6 << 20);
      expect(statSync(file.path).size).toBe(6 << 20);
      expect(file.sha256).toBe(
        createHash('sha256')
          .update(Buffer.concat(Array(6).fill(mib)))
          .digest('hex'),
      );
    } finally {
      syncs.restore();
    }
  });

  it('does not keep small uploads, nor ones larger than the whole budget', async () => {
    await open();
    expect(await uploads.begin('small', 9, 0)).toBeNull();
    expect(await uploads.begin('huge', 101, 0)).toBeNull();
  });

  it('stops keeping an upload that outgrows the byte budget', async () => {
    await open();
    const a = (await uploads.begin('a', 80, 0))!;
    await a.append(bytes(70));
    const b = (await uploads.begin('b', 80, 0))!;
    await b.append(bytes(40)); // 110 > 100: b is no longer kept
    await b.keep();
    await a.keep();
    expect(uploads.committed('a')).toBe(70);
    expect(uploads.committed('b')).toBe(0);
  });

  it('makes room by dropping the oldest idle upload, and never an active one', async () => {
    await open();
    const a = (await uploads.begin('a', 20, 0))!;
    await a.append(bytes(10));
    await a.keep();
    now += 10;
    const b = (await uploads.begin('b', 20, 0))!;
    await b.append(bytes(10));
    const c = (await uploads.begin('c', 20, 0))!; // two kept already: 'a' (idle) goes
    expect(c).not.toBeNull();
    expect(uploads.committed('a')).toBe(0);
    expect(await uploads.begin('d', 20, 0)).toBeNull(); // 'b' and 'c' are both active
  });

  it('drops uploads idle for longer than idleMs', async () => {
    await open();
    const a = (await uploads.begin('a', 20, 0))!;
    await a.append(bytes(15));
    await a.keep();
    now += 999;
    expect(uploads.committed('a')).toBe(15);
    now += 2;
    expect(uploads.committed('a')).toBe(0);
  });

  it('sweeps the folders of processes that are gone at once, at open, and removes its own at close', async () => {
    const live = await open(); // a process still running (this one) keeps its folder, however idle
    await live.begin('x', 20, 0);
    // A crashed process's folder: our PID with another start time, i.e. a reused PID whose owner is gone.
    mkdirSync(join(parentDir, `w-p${process.pid}-1-abcdef`));
    writeFileSync(join(parentDir, `w-p${process.pid}-1-abcdef`, 'partial'), 'left behind');
    mkdirSync(join(parentDir, 'w-older'));
    const before = readdirSync(parentDir).length;
    const fresh = await PartialUploads.open({
      parentDir,
      maxBytes: 100,
      maxUploads: 2,
      idleMs: 1000,
      minBlobBytes: 10,
      now: () => now,
    });
    // No time passed: the dead owner's folder is gone at once; the unnamed (older) one waits for the idle time.
    expect(readdirSync(parentDir)).toHaveLength(before - 1 + 1);
    expect(readdirSync(parentDir)).not.toContain(`w-p${process.pid}-1-abcdef`);
    expect(readdirSync(parentDir)).toContain('w-older');
    await fresh.close();
    await live.close();
    expect(readdirSync(parentDir)).toEqual(['w-older']);
  });
});
