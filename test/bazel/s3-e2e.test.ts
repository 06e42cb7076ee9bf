// The real Bazel client against `larder edge` on tiered(disk, s3), with s3rver as S3: a clean rebuild is 100%
// remote cache hits, and so is a rebuild against a new edge whose disk tier starts empty (a fresh fleet node,
// or a node that lost its disk): S3 is the durable tier and refills the disk.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { requireTool } from '../helpers/tools.ts';
import { BazelWorkspace, bazelStatus } from './bazel.ts';
import { TARGETS, expectOk, expectOutputs } from './expectations.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const runtimes = edgeRuntimes();

/** Files under a folder, recursively. */
const countFiles = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (n, d) => n + (d.isDirectory() ? countFiles(join(dir, d.name)) : 1),
    0,
  );

describe.runIf(haveBazel)('real Bazel against larder edge on tiered(disk, s3)', () => {
  const dir = tempDir();
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server();
  });
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await s3?.destroy();
    dir.remove();
  }, 120_000);

  for (const runtime of runtimes) {
    it(`build, clean, rebuild on ${runtime}, then rebuild from S3 alone: every cacheable action is a hit`, async () => {
      const store = (disk: string) =>
        `tiered(disk:${join(dir.path, runtime, disk)}@1GiB,s3://${S3_BUCKET}/e2e-${runtime})`;
      let edge: EdgeProcess = await startEdgeProcess({ runtime, args: ['--store', store('first')], env: s3.env() });
      const ws = await BazelWorkspace.create();
      try {
        const cold = await ws.build(TARGETS, [`--remote_cache=${edge.url}/team-a`]);
        expectOk(cold);
        expect(cold.summary!.nonInternal).toBeGreaterThan(0);
        expect(cold.summary!.remoteCacheHit).toBe(0);
        expect((await s3.list(`e2e-${runtime}/i-team-a/`)).length).toBeGreaterThan(0);

        await ws.clean();
        const warm = await ws.build(TARGETS, [`--remote_cache=${edge.url}/team-a`]);
        expectOk(warm);
        expect(warm.summary!.remoteCacheHit).toBe(cold.summary!.nonInternal);
        expect(warm.summary!.other).toEqual({});
        await expectOutputs(ws);

        // A new edge with an empty disk tier over the same bucket: every hit now comes from S3.
        await edge.stop();
        edge = await startEdgeProcess({ runtime, args: ['--store', store('second')], env: s3.env() });
        await ws.clean();
        const fromS3 = await ws.build(TARGETS, [`--remote_cache=${edge.url}/team-a`]);
        expectOk(fromS3);
        expect(fromS3.summary!.remoteCacheHit).toBe(cold.summary!.nonInternal);
        expect(fromS3.summary!.other).toEqual({});
        await expectOutputs(ws);
        expect(countFiles(join(dir.path, runtime, 'second', 'blobs'))).toBeGreaterThan(0); // the reads filled the disk tier
      } finally {
        await ws.shutdown();
        await edge.stop();
      }
    }, 600_000);
  }
});
