/**
 * The real Bazel client (Debian's 4.2.3) downloading through `larder executor` with
 * --experimental_remote_downloader: a workspace with an http_archive and an http_file, served by a loopback
 * origin that counts requests. Every build runs in a fresh output base (so Bazel's own repository cache is
 * empty): the origin sees one request per file however many builds run, and after it is stopped a fresh build
 * still succeeds from larder's CAS. A wrong sha256 fails and stores nothing; a host off the allow-list is refused.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, describeRun } from '../../bazel/bazel.ts';
import { tempDir } from '../../helpers/edge-process.ts';
import { requireTool } from '../../helpers/tools.ts';
import { clientsFor, type ExecutorProcess, startExecutorProcess } from '../helpers.ts';
import { type Origin, startOrigin } from './origin.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const TEMPLATE = join(import.meta.dirname, 'workspace');
const GREETING = 'hello from a tarball\n';
const FILE = 'and from a single file\n';
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/** A .tar.gz holding pkg/greeting.txt and a BUILD file exporting it, made with the system's tar. */
function makeTarball(dir: string): Buffer {
  const pkg = join(dir, 'tarball-src', 'pkg');
  mkdirSync(pkg, { recursive: true });
  writeFileSync(join(pkg, 'greeting.txt'), GREETING);
  writeFileSync(join(pkg, 'BUILD'), 'exports_files(["greeting.txt"])\n');
  const out = join(dir, 'pkg.tar.gz');
  execFileSync('tar', [
    '--sort=name',
    '--mtime=@0',
    '--owner=0',
    '--group=0',
    '-czf',
    out,
    '-C',
    join(dir, 'tarball-src'),
    'pkg',
  ]);
  return readFileSync(out);
}

function workspaceFile(origin: string, tarSha: string, fileUrl: string, fileSha: string): string {
  return `workspace(name = "larder_downloads")
load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive", "http_file")
http_archive(name = "tarball", urls = ["${origin}/pkg.tar.gz"], sha256 = "${tarSha}", strip_prefix = "pkg")
http_file(name = "single_file", urls = ["${fileUrl}"], sha256 = "${fileSha}", downloaded_file_path = "data.txt")
`;
}

describe.runIf(haveBazel)('real Bazel downloading through larder (Remote Asset API)', () => {
  const dir = tempDir('larder-bazel-asset-');
  let origin: Origin;
  /** Allowed too, and still up when `origin` is stopped: serves what the failure cases need. */
  let mirror: Origin;
  /** Not on the allow-list. */
  let elsewhere: Origin;
  let executor: ExecutorProcess;
  let tarball: Buffer;
  let flags: string[];

  beforeAll(async () => {
    tarball = makeTarball(dir.path);
    origin = await startOrigin({ '/pkg.tar.gz': { body: tarball }, '/data.txt': { body: FILE } });
    mirror = await startOrigin({ '/tampered.txt': { body: 'tampered\n' } });
    elsewhere = await startOrigin({ '/only-here.txt': { body: 'only elsewhere\n' } });
    executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir.path, 'store')}`,
      '--workers',
      '0',
      '--fetch-allow',
      `${origin.host},${mirror.host}`,
      '--log-level',
      'debug',
    ]);
    flags = [`--remote_cache=${executor.url}`, `--experimental_remote_downloader=${executor.url}`];
  }, 60_000);

  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await executor?.stop();
    for (const server of [origin, mirror, elsewhere]) await server?.stop();
    dir.remove();
  }, 120_000);

  /** A workspace of its own (fresh output base, so an empty repository cache), WORKSPACE file as given. */
  async function workspace(workspaceText: string): Promise<BazelWorkspace> {
    const ws = await BazelWorkspace.create({ template: TEMPLATE });
    writeFileSync(join(ws.root, 'WORKSPACE'), workspaceText);
    return ws;
  }

  async function freshBuild(workspaceText: string) {
    const ws = await workspace(workspaceText);
    try {
      const run = await ws.build(['//:combined'], flags);
      const output = run.exitCode === 0 ? (await ws.readOutput('combined.txt')).toString() : null;
      return { run, output };
    } finally {
      await ws.shutdown();
    }
  }

  it('downloads each file once, however many builds fetch it, and keeps building after the origin is gone', async () => {
    // Bazel's own repository cache is off, so every fetch of a repository goes to larder.
    const uncached = [...flags, '--repository_cache='];
    const at = (query: string) =>
      workspaceFile(`${origin.url}`, sha256(tarball), `${origin.url}/data.txt${query}`, sha256(FILE)).replace(
        '/pkg.tar.gz"',
        `/pkg.tar.gz${query}"`,
      );
    const ws = await workspace(at(''));
    try {
      for (const query of ['', '?build=2', '?build=3']) {
        // New URLs make Bazel fetch both repositories again: larder answers by checksum, from its CAS.
        writeFileSync(join(ws.root, 'WORKSPACE'), at(query));
        await ws.clean();
        const run = await ws.build(['//:combined'], uncached);
        expect(run.exitCode, describeRun(run)).toBe(0);
        expect((await ws.readOutput('combined.txt')).toString()).toBe(GREETING + FILE);
        expect([origin.count('/pkg.tar.gz'), origin.count('/data.txt')], `after build ${query}`).toEqual([1, 1]);
      }
    } finally {
      await ws.shutdown();
    }
    // What Bazel 4.2.3 sends (logged at debug): only checksum.sri here, as the workspace sets no canonical_id
    // and no auth patterns. One FetchBlob per repository and build.
    const asked = executor.output().match(/FetchBlob uris=\S+ qualifiers=[^\n]*/g) ?? [];
    expect(asked, executor.output()).toHaveLength(6);
    for (const line of asked) expect(line).toMatch(/qualifiers=checksum\.sri$/);
    await origin.stop();
    const offline = await freshBuild(at(''));
    expect(offline.run.exitCode, describeRun(offline.run)).toBe(0);
    expect(offline.output).toBe(GREETING + FILE);
  }, 300_000);

  it('fails on a wrong sha256 and stores nothing; refuses a host off the allow-list', async () => {
    // One Bazel server for both failures: the WORKSPACE changes between the builds.
    const tampered = `${mirror.url}/tampered.txt`;
    const ws = await workspace(workspaceFile(origin.url, sha256(tarball), tampered, sha256('what was promised\n')));
    try {
      const wrong = await ws.build(['//:combined'], flags);
      expect(wrong.exitCode, describeRun(wrong)).not.toBe(0);
      expect(wrong.stderr).toMatch(/FAILED_PRECONDITION: .*checksum mismatch: expected sha256-/);
      const check = clientsFor(`127.0.0.1:${executor.port}`);
      try {
        const { missingBlobDigests } = await check.cas.findMissingBlobs({
          blobDigests: [{ hash: sha256('tampered\n'), sizeBytes: BigInt('tampered\n'.length) }],
        });
        expect(missingBlobDigests).toHaveLength(1);
      } finally {
        check.close();
      }

      const offList = `${elsewhere.url}/only-here.txt`;
      writeFileSync(
        join(ws.root, 'WORKSPACE'),
        workspaceFile(origin.url, sha256(tarball), offList, sha256('only elsewhere\n')),
      );
      const refused = await ws.build(['//:combined'], flags);
      expect(refused.exitCode, describeRun(refused)).not.toBe(0);
      expect(refused.stderr).toMatch(/PERMISSION_DENIED: .*not on this server's --fetch-allow list/);
      expect(elsewhere.count('/only-here.txt')).toBe(0);
    } finally {
      await ws.shutdown();
    }
  }, 300_000);
});
