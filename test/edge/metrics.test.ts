/**
 * `GET /metrics` of a real `larder edge` process, on Node and on Deno: real traffic (stores, hits, misses, a
 * wrong hash, a wrong password, evictions from a small memory tier) moves each counter and histogram by exactly
 * what it should, and nothing secret or unbounded (hashes, user names) shows up.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { randomBlob } from '../helpers/http.ts';
import {
  checkHistogramGrowth,
  delta,
  histogramSeries,
  LATENCY_BOUNDS,
  parseExposition,
  sample,
  scrape,
} from '../helpers/prometheus.ts';

const runtimes = edgeRuntimes();
const KiB = 1024;

describe.each(runtimes)('metrics on %s', (runtime) => {
  const dir = tempDir('larder-metrics-');
  let edge: EdgeProcess;

  const call = async (method: string, path: string, init: { body?: Uint8Array; authorization?: string } = {}) => {
    const res = await fetch(`${edge.url}${path}`, {
      method,
      headers: init.authorization === undefined ? {} : { authorization: init.authorization },
      ...(init.body === undefined ? {} : { body: init.body }),
      signal: AbortSignal.timeout(15_000),
    });
    await res.arrayBuffer();
    return res.status;
  };

  beforeAll(async () => {
    const htpasswd = join(dir.path, 'htpasswd');
    await writeFile(htpasswd, `ci:{SHA}${createHash('sha1').update('ci-password').digest('base64')}\n`);
    const config = join(dir.path, 'larder.json');
    // Anonymous may read and write, so only a wrong password is refused.
    await writeFile(config, JSON.stringify({ auth: { anonymous: ['read', 'write'] } }));
    edge = await startEdgeProcess({
      runtime,
      args: [
        '--store',
        `tiered(memory:100KiB,disk:${dir.path}/blobs@1GiB)`,
        '--htpasswd',
        htpasswd,
        '--config',
        config,
      ],
    });
  });
  afterAll(async () => {
    await edge?.stop();
    dir.remove();
  });

  it('counts requests by method, kind and outcome, bytes, store latency, usage, evictions and refusals', async () => {
    const before = await scrape(`${edge.url}/metrics`);
    const a = randomBlob(60 * KiB);
    const b = randomBlob(60 * KiB);
    expect(await call('PUT', `/cas/${a.hash}`, { body: a.data })).toBe(200);
    expect(await call('PUT', `/cas/${b.hash}`, { body: b.data })).toBe(200); // evicts a from the 100 KiB memory tier
    expect(await call('GET', `/cas/${a.hash}`)).toBe(200); // from disk, refilling memory (evicting b)
    expect(await call('GET', `/cas/${a.hash}`)).toBe(200);
    expect(await call('HEAD', `/team-a/cas/${b.hash}`)).toBe(404);
    expect(await call('GET', `/ac/${'0'.repeat(64)}`)).toBe(404);
    expect(await call('PUT', `/cas/${'1'.repeat(64)}`, { body: a.data })).toBe(400); // wrong hash
    expect(await call('GET', `/cas/${a.hash}`, { authorization: `Basic ${btoa('ci:wrong-password')}` })).toBe(401);
    const text = await (await fetch(`${edge.url}/metrics`)).text();
    const after = await scrape(`${edge.url}/metrics`);
    const moved = delta(before, after);

    const requests = (method: string, kind: string, outcome: string) =>
      moved('larder_requests_total', { protocol: 'http', method, kind, outcome });
    expect(requests('PUT', 'cas', 'stored')).toBe(2);
    expect(requests('GET', 'cas', 'hit')).toBe(2);
    expect(requests('HEAD', 'cas', 'miss')).toBe(1);
    expect(requests('GET', 'ac', 'miss')).toBe(1);
    expect(requests('PUT', 'cas', 'refused')).toBe(1);
    expect(requests('GET', 'cas', 'refused')).toBe(1);
    expect(moved('larder_bytes_total', { protocol: 'http', direction: 'in' })).toBe(120 * KiB);
    expect(moved('larder_bytes_total', { protocol: 'http', direction: 'out' })).toBe(120 * KiB);
    expect(moved('larder_auth_refusals_total', { protocol: 'http', reason: 'unauthenticated' })).toBe(1);

    // Store operations by tier: both puts reached both tiers; the first GET missed memory and hit disk, the
    // action-cache GET missed both; the HEAD and the two good CAS uploads (checked for presence first) asked both,
    // the disk tier answering the uploads' checks from its index in a batch (statMany), which is not timed as a stat.
    // The upload whose bytes do not hash to its name is read whole and refused before any store is asked.
    const ops = (store: string, tier: string, operation: string, result: string) =>
      moved('larder_store_operation_seconds_count', { store, tier, operation, result });
    expect(ops('memory', '0', 'put', 'ok')).toBe(3); // two uploads and one refill
    expect(ops('disk', '1', 'put', 'ok')).toBe(2);
    expect(ops('memory', '0', 'get', 'miss')).toBe(2);
    expect(ops('disk', '1', 'get', 'hit')).toBe(1);
    expect(ops('disk', '1', 'get', 'miss')).toBe(1);
    expect(ops('memory', '0', 'stat', 'miss')).toBe(3);
    expect(ops('disk', '1', 'stat', 'miss')).toBe(1);
    expect(ops('memory', '0', 'get', 'hit')).toBe(1);
    expect(
      moved('larder_store_operation_seconds_bucket', {
        store: 'disk',
        tier: '1',
        operation: 'put',
        result: 'ok',
        le: '+Inf',
      }),
    ).toBe(2);
    expect(moved('larder_store_evictions_total', { store: 'memory', tier: '0' })).toBe(2);
    expect(sample(after, 'larder_store_bytes', { store: 'memory', tier: '0' })).toBe(60 * KiB);
    expect(sample(after, 'larder_store_budget_bytes', { store: 'memory', tier: '0' })).toBe(100 * KiB);
    expect(sample(after, 'larder_store_bytes', { store: 'disk', tier: '1' })).toBe(120 * KiB);
    expect(sample(after, 'larder_store_budget_bytes', { store: 'disk', tier: '1' })).toBe(1024 * 1024 * KiB);

    // Bounded labels only: no hash, instance, user or password.
    for (const secret of [a.hash, b.hash, 'team-a', 'ci', 'wrong-password'])
      expect(text).not.toMatch(new RegExp(`"${secret}"`));
    expect(text).not.toContain(a.hash);
  });

  it('exposes the store latency histogram as prom-client writes it, growing by exactly the operations made', async () => {
    const beforeText = await (await fetch(`${edge.url}/metrics`)).text();
    const c = randomBlob(KiB);
    expect(await call('PUT', `/cas/${c.hash}`, { body: c.data })).toBe(200);
    expect(await call('GET', `/cas/${c.hash}`)).toBe(200);
    expect(await call('GET', `/cas/${c.hash}`)).toBe(200);
    const afterText = await (await fetch(`${edge.url}/metrics`)).text();

    const series = checkHistogramGrowth(beforeText, afterText, 'larder_store_operation_seconds', LATENCY_BOUNDS);
    expect(histogramSeries(afterText, 'larder_store_operation_seconds').help).toBe(
      'Store operation latency by store, tier, operation and result (get: until the blob is open, not read)',
    );
    expect(series.map((s) => s.labels)).toContain('store="memory",tier="0",operation="put",result="ok"');
    const moved = delta(parseExposition(beforeText), parseExposition(afterText));
    const ops = (store: string, tier: string, operation: string, result: string) =>
      moved('larder_store_operation_seconds_count', { store, tier, operation, result });
    expect(ops('memory', '0', 'put', 'ok')).toBe(1);
    expect(ops('disk', '1', 'put', 'ok')).toBe(1);
    expect(ops('memory', '0', 'get', 'hit')).toBe(2);
    expect(ops('disk', '1', 'get', 'hit')).toBe(0);
  });

  it('serves /metrics to readers only, like the cache; /healthz stays open', async () => {
    expect(await call('GET', '/metrics', { authorization: `Basic ${btoa('ci:wrong-password')}` })).toBe(401);
    expect(await call('GET', '/healthz', { authorization: `Basic ${btoa('ci:wrong-password')}` })).toBe(200);
  });
});
