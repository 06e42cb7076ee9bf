/**
 * SharedDownloads on its own: one download per key however many callers wait, and a download that stops only
 * when the last of its callers has gone. The gRPC behaviour around it is in fetch.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { SharedDownloads } from '../../../executor/services/asset/shared-downloads.ts';

/** A download the test finishes by hand, recording the signal it was given. */
function manualDownload() {
  let finish: (value: string) => void = () => {};
  let seen: AbortSignal | undefined;
  let calls = 0;
  const download = (signal: AbortSignal) => {
    calls++;
    seen = signal;
    return new Promise<string>((resolve, reject) => {
      finish = resolve;
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  };
  return { download, finish: (value: string) => finish(value), signal: () => seen, calls: () => calls };
}

describe('SharedDownloads', () => {
  it('runs one download per key and hands its result to every caller', async () => {
    const downloads = new SharedDownloads<string>();
    const manual = manualDownload();
    expect(downloads.join('k', new AbortController().signal)).toBeNull();
    const first = downloads.start('k', new AbortController().signal, manual.download);
    const second = downloads.join('k', new AbortController().signal);
    expect(second).not.toBeNull();
    expect([downloads.size, downloads.waiters]).toEqual([1, 2]);
    manual.finish('content');
    expect(await first).toBe('content');
    expect(await second).toBe('content');
    expect(manual.calls()).toBe(1);
    expect([downloads.size, downloads.waiters]).toEqual([0, 0]);
    expect(downloads.join('k', new AbortController().signal)).toBeNull();
  });

  it('keeps downloading for the callers left when the one that started it gives up', async () => {
    const downloads = new SharedDownloads<string>();
    const manual = manualDownload();
    const starter = new AbortController();
    const first = downloads.start('k', starter.signal, manual.download);
    const second = downloads.join('k', new AbortController().signal)!;
    starter.abort(new Error('the starter cancelled'));
    await expect(first).rejects.toThrow('the starter cancelled');
    expect(manual.signal()?.aborted).toBe(false);
    manual.finish('content');
    expect(await second).toBe('content');
  });

  it('stops the download when every caller has gone, and frees the key', async () => {
    const downloads = new SharedDownloads<string>();
    const manual = manualDownload();
    const a = new AbortController();
    const b = new AbortController();
    const first = downloads.start('k', a.signal, manual.download);
    const second = downloads.join('k', b.signal)!;
    a.abort(new Error('a left'));
    b.abort(new Error('b left'));
    await expect(first).rejects.toThrow('a left');
    await expect(second).rejects.toThrow('b left');
    expect(manual.signal()?.aborted).toBe(true);
    await expect.poll(() => downloads.size).toBe(0);
  });

  it('hands a failed download to every caller', async () => {
    const downloads = new SharedDownloads<string>();
    const failing = () => Promise.reject(new Error('origin said 404'));
    const first = downloads.start('k', new AbortController().signal, failing);
    const second = downloads.join('k', new AbortController().signal);
    await expect(first).rejects.toThrow('origin said 404');
    await expect(second).rejects.toThrow('origin said 404');
  });
});
