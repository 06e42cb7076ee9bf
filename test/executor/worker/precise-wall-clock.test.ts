// The worker's metadata clock: the wall clock (never a millisecond away from Date.now()), finer than Date.
import { describe, expect, it } from 'vitest';
import { preciseTimestamp, preciseWallClockMs } from '../../../executor/worker/precise-wall-clock.ts';

describe('preciseWallClockMs', () => {
  it('stays within the millisecond Date.now() names, never goes back, and resolves below a millisecond', () => {
    const readings: number[] = [];
    for (let i = 0; i < 2_000; i++) {
      const before = Date.now();
      const ms = preciseWallClockMs();
      const after = Date.now();
      expect(ms).toBeGreaterThanOrEqual(before);
      expect(ms).toBeLessThan(after + 1);
      readings.push(ms);
    }
    expect([...readings].sort((a, b) => a - b)).toEqual(readings);
    expect(readings.filter((ms) => !Number.isInteger(ms)).length).toBeGreaterThan(1_000);
  });

  it('gives Timestamps with the same instant in seconds and nanos', () => {
    const before = Date.now();
    const t = preciseTimestamp();
    const ms = Number(t.seconds) * 1000 + t.nanos / 1e6;
    expect(t.nanos).toBeGreaterThanOrEqual(0);
    expect(t.nanos).toBeLessThan(1e9);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThan(Date.now() + 1);
  });
});
