// Proves the Bazel harness itself against a real HTTP cache (nginx + WebDAV PUT).
//
// Outside CI a missing bazel/nginx skips the end-to-end part with a message;
// with CI=true it fails instead.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, describeRun, parseProcessSummary, parseTotalActions } from './bazel.ts';
import { TARGETS, expectOk, expectOutputs } from './expectations.ts';
import { type DavCache, type DavRequest, nginxAvailable, nginxPath, startNginxDavCache } from './nginx.ts';

describe('parseProcessSummary', () => {
  it('reads remote cache hits and internal processes', () => {
    expect(parseProcessSummary('INFO: 50 processes: 41 remote cache hit, 9 internal.')).toEqual({
      total: 50,
      remoteCacheHit: 41,
      internal: 9,
      nonInternal: 41,
      other: {},
      line: '50 processes: 41 remote cache hit, 9 internal',
    });
  });

  it('reads the singular form', () => {
    const s = parseProcessSummary('INFO: 1 process: 1 internal.');
    expect(s).toMatchObject({ total: 1, remoteCacheHit: 0, internal: 1, nonInternal: 0, other: {} });
  });

  it('keeps local strategies apart, keyed as printed', () => {
    const s = parseProcessSummary('INFO: 21 processes: 1 internal, 20 linux-sandbox.');
    expect(s).toMatchObject({
      total: 21,
      remoteCacheHit: 0,
      internal: 1,
      nonInternal: 20,
      other: { 'linux-sandbox': 20 },
    });
    const t = parseProcessSummary('INFO: 41 processes: 21 linux-sandbox, 20 worker.');
    expect(t).toMatchObject({ total: 41, internal: 0, nonInternal: 41, other: { 'linux-sandbox': 21, worker: 20 } });
    const u = parseProcessSummary('INFO: 7 processes: 2 disk cache hit, 1 internal, 4 processwrapper-sandbox.');
    expect(u).toMatchObject({
      remoteCacheHit: 0,
      internal: 1,
      other: { 'disk cache hit': 2, 'processwrapper-sandbox': 4 },
    });
    const v = parseProcessSummary('INFO: 12 processes: 3 internal, 9 remote.');
    expect(v).toMatchObject({ remoteCacheHit: 0, other: { remote: 9 } });
  });

  it('takes the last summary in real console output and ignores other INFO lines', () => {
    const output = [
      'Starting local Bazel server and connecting to it...',
      'INFO: Analyzed target //:all_outputs (16 packages loaded, 72 targets configured).',
      'INFO: Found 1 target...',
      'INFO: 3 processes: 3 internal.',
      'Target //:all_outputs up-to-date:',
      '  bazel-bin/hello',
      'INFO: Elapsed time: 0.600s, Critical Path: 0.17s',
      '\u001b[32mINFO: \u001b[0m10 processes: 8 remote cache hit, 2 internal.',
      'INFO: Build completed successfully, 10 total actions',
      '',
    ].join('\r\n');
    expect(parseProcessSummary(output)).toMatchObject({ total: 10, remoteCacheHit: 8, internal: 2, nonInternal: 8 });
    expect(parseTotalActions(output)).toBe(10);
  });

  it('accepts timestamps and a bare count', () => {
    expect(parseProcessSummary('(21:35:49) INFO: 4 processes: 4 remote cache hit.')).toMatchObject({
      total: 4,
      remoteCacheHit: 4,
    });
    expect(parseProcessSummary('INFO: 0 processes.')).toMatchObject({ total: 0, nonInternal: 0, other: {} });
  });

  it('returns null without a summary and throws on a garbled one', () => {
    expect(parseProcessSummary("ERROR: no such target '//:nope'\nINFO: Elapsed time: 0.1s\n")).toBeNull();
    expect(parseProcessSummary('INFO: Build completed successfully, 10 total actions')).toBeNull();
    expect(() => parseProcessSummary('INFO: 5 processes: several internal.')).toThrow(/unparseable/);
  });
});

// ---------------------------------------------------------------------------

const inCI = process.env.CI === 'true';
const bazel = bazelStatus();
const haveNginx = nginxAvailable();
const missing = [
  ...(bazel.available ? [] : [`bazel (${bazel.reason ?? 'unavailable'})`]),
  ...(haveNginx ? [] : [`nginx (${nginxPath()} not executable)`]),
];
const runE2E = missing.length === 0 || inCI;
if (!runE2E) {
  console.warn(
    `[test/bazel] skipping real-Bazel tests, missing: ${missing.join(', ')} (set CI=true to make this fail)`,
  );
}

describe.skipIf(!runE2E)('real Bazel against an nginx HTTP cache', () => {
  let cache: DavCache | undefined;

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`CI=true requires ${missing.join(' and ')}`);
    cache = await startNginxDavCache();
  }, 30_000);

  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await cache?.stop();
  }, 120_000);

  function davCache(): DavCache {
    if (cache === undefined) throw new Error('nginx did not start');
    return cache;
  }

  // Shared by the tests below: the first one fills the cache under this nonce.
  const nonce = `harness-${process.pid}-${Date.now()}`;
  let coldNonInternal = 0;

  it('build, clean, rebuild: every non-internal process becomes a remote cache hit', async () => {
    const dav = davCache();
    const remote = `--remote_cache=${dav.url}team-a`;
    const ws = await BazelWorkspace.create({ nonce });
    try {
      const cold = await ws.build(TARGETS, [remote]);
      expectOk(cold);
      const coldSummary = cold.summary!;
      console.log(
        `[test/bazel] cold build ${cold.durationMs} ms: ${coldSummary.line}; ${cold.totalActions} total actions`,
      );
      expect(coldSummary.nonInternal).toBeGreaterThan(0);
      expect(coldSummary.remoteCacheHit).toBe(0);
      await expectOutputs(ws);
      coldNonInternal = coldSummary.nonInternal;

      const afterCold = await dav.requests();
      const puts = afterCold.filter((r) => r.method === 'PUT');
      // One action result per cacheable process, plus outputs, Action and Command blobs.
      expect(puts.filter((r) => r.path.startsWith('/team-a/ac/')).length).toBe(coldSummary.nonInternal);
      expect(puts.filter((r) => r.path.startsWith('/team-a/cas/')).length).toBeGreaterThan(coldSummary.nonInternal);
      expect(puts.filter((r) => r.status !== 201 && r.status !== 204)).toEqual([]);
      expectBazelTraffic(afterCold, '/team-a/');

      await ws.clean();
      await expect(ws.readOutput('report.txt')).rejects.toThrow();

      const warm = await ws.build(TARGETS, [remote]);
      expectOk(warm);
      const warmSummary = warm.summary!;
      console.log(
        `[test/bazel] warm build ${warm.durationMs} ms: ${warmSummary.line}; ${warm.totalActions} total actions`,
      );
      expect(warmSummary.total).toBe(coldSummary.total);
      expect(warmSummary.nonInternal).toBe(coldSummary.nonInternal);
      expect(warmSummary.remoteCacheHit).toBe(warmSummary.nonInternal);
      expect(warmSummary.other).toEqual({});
      await expectOutputs(ws);

      const during = (await dav.requests()).slice(afterCold.length);
      expect(during.filter((r) => r.method !== 'GET')).toEqual([]);
      const acGets = during.filter((r) => r.path.startsWith('/team-a/ac/'));
      expect(acGets.length).toBe(warmSummary.remoteCacheHit);
      expect(acGets.filter((r) => r.status !== 200)).toEqual([]);
      expectBazelTraffic(during, '/team-a/');
    } finally {
      await ws.shutdown();
    }
  }, 600_000);

  it("action keys do not depend on the workspace's location, only on the nonce", async () => {
    expect(coldNonInternal, 'the first test must have filled the cache').toBeGreaterThan(0);
    const dav = davCache();
    const remote = `--remote_cache=${dav.url}team-a`;
    // Another temp dir, output base and server, same nonce: all hits.
    const same = await BazelWorkspace.create({ nonce });
    // A fresh random nonce: nothing in the cache applies.
    const fresh = await BazelWorkspace.create();
    try {
      const hit = await same.build(TARGETS, [remote]);
      expectOk(hit);
      expect(hit.summary!.nonInternal).toBe(coldNonInternal);
      expect(hit.summary!.remoteCacheHit).toBe(coldNonInternal);
      await expectOutputs(same);

      const miss = await fresh.build(TARGETS, [remote]);
      expectOk(miss);
      expect(miss.summary!.nonInternal).toBe(coldNonInternal);
      expect(miss.summary!.remoteCacheHit).toBe(0);
      await expectOutputs(fresh);
    } finally {
      await Promise.all([same.shutdown(), fresh.shutdown()]);
    }
  }, 600_000);

  it('a run that overstays its timeout is stopped and reported, and the workspace stays usable', async () => {
    const ws = await BazelWorkspace.create({ extraBazelrc: 'build --show_timestamps' });
    try {
      const first = await ws.build(TARGETS);
      expectOk(first);
      expect(first.stderr).toMatch(/^\(\d\d:\d\d:\d\d\) INFO: \d+ processes/m);
      const started = Date.now();
      const slow = await ws.build(['//:slow'], [], { timeoutMs: 3_000 });
      expect(slow.timedOut, describeRun(slow)).toBe(true);
      expect(slow.exitCode).not.toBe(0);
      expect(Date.now() - started).toBeLessThan(30_000);
      const again = await ws.build(TARGETS);
      expectOk(again);
      await expectOutputs(ws);
      const server = ws.serverPid();
      expect(server).not.toBeNull();
      await ws.shutdown();
      expect(isAlive(server ?? 0), `the Bazel server ${server} still runs`).toBe(false);
    } finally {
      await ws.shutdown();
    }
  }, 600_000);
});

function expectBazelTraffic(requests: DavRequest[], prefix: string): void {
  for (const r of requests) {
    expect(['GET', 'PUT'], r.path).toContain(r.method);
    expect(r.path, r.path).toMatch(new RegExp(`^${prefix}(ac|cas)/[0-9a-f]{64}$`));
    expect(r.userAgent).toMatch(/^bazel\//);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
