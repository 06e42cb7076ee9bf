// The real Bazel client against `larder edge` on Node and on Deno: a clean rebuild is 100% remote cache
// hits, and an action-cache entry whose outputs were evicted makes Bazel re-run the action, not fail.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { requireTool } from '../helpers/tools.ts';
import { BazelWorkspace, bazelStatus } from './bazel.ts';
import { TARGETS, expectOk, expectOutputs } from './expectations.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const runtimes = edgeRuntimes();

describe.runIf(haveBazel)('real Bazel against larder edge', () => {
  const dir = tempDir();
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    dir.remove();
  }, 120_000);

  for (const runtime of runtimes) {
    it(`build, clean, rebuild on ${runtime}: every cacheable action is a remote cache hit`, async () => {
      const store = join(dir.path, runtime);
      const edge = await startEdgeProcess({ runtime, args: ['--store', `disk:${store}`] });
      const ws = await BazelWorkspace.create();
      try {
        const remote = `--remote_cache=${edge.url}/team-a`;
        const cold = await ws.build(TARGETS, [remote]);
        expectOk(cold);
        expect(cold.summary!.nonInternal).toBeGreaterThan(0);
        expect(cold.summary!.remoteCacheHit).toBe(0);

        await ws.clean();
        const warm = await ws.build(TARGETS, [remote]);
        expectOk(warm);
        expect(warm.summary!.remoteCacheHit).toBe(cold.summary!.nonInternal);
        expect(warm.summary!.other).toEqual({});
        await expectOutputs(ws);
      } finally {
        await ws.shutdown();
        await edge.stop();
      }
    }, 600_000);
  }

  it('re-runs actions whose cached outputs were evicted instead of failing the build', async () => {
    const store = join(dir.path, 'evicted');
    let edge: EdgeProcess = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${store}`] });
    const ws = await BazelWorkspace.create();
    try {
      const remote = `--remote_cache=${edge.url}/team-a`;
      expectOk(await ws.build(TARGETS, [remote]));
      await edge.stop();

      // Every output blob is gone while the action-cache entries stay, as after an eviction.
      rmSync(join(store, 'blobs', 'i-team-a', 'cas'), { recursive: true });
      edge = await startEdgeProcess({ runtime: 'node', args: ['--store', `disk:${store}`] });

      await ws.clean();
      // With --remote_download_toplevel Bazel trusts an AC hit and only fetches outputs later, so a stale
      // entry fails the build (checked: it does with --ac-validation off); a validating cache answers 404.
      const rebuilt = await ws.build(TARGETS, [`--remote_cache=${edge.url}/team-a`, '--remote_download_toplevel']);
      expectOk(rebuilt);
      expect(rebuilt.summary!.remoteCacheHit).toBe(0);
      await expectOutputs(ws);
    } finally {
      await ws.shutdown();
      await edge.stop();
    }
  }, 600_000);
});
