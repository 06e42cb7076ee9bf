// The status chart's history: one point per minute from the running totals, plus the minute so far.
import { expect, it } from 'vitest';
import { History } from '../../shared/metrics/history.ts';

it('turns per-minute samples of running totals into points, the last one up to now, and keeps one hour', () => {
  let now = 1_000_000;
  const totals = { requests: 0, hits: 0, misses: 0 };
  const history = new History({ totals: () => totals, now: () => now });
  Object.assign(totals, { requests: 10, hits: 6, misses: 2 });
  now += 60_000;
  history.sample();
  Object.assign(totals, { requests: 13, hits: 6, misses: 2 });
  now += 30_000;
  expect(history.series()).toEqual([
    { t: 1060, requests: 10, hitRatio: 0.75 },
    { t: 1090, requests: 3, hitRatio: null },
  ]);
  for (let i = 0; i < 70; i++) {
    now += 60_000;
    history.sample();
  }
  const points = history.series();
  expect(points.length).toBeLessThanOrEqual(61);
  expect(points[0]!.t).toBeGreaterThanOrEqual(Math.round((now - 3_600_000) / 1000));
});
