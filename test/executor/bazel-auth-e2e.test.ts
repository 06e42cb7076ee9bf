// The real Bazel client (Debian's 4.2.3, which has no credential helpers) against `larder executor` over
// gRPC, demanding credentials from a real OpenID provider. One workspace and one executor throughout, so that
// only the first build is cold:
//   1. a token with write in --remote_header: a cold build uploads over gRPC
//   2. after clean, the same: every cacheable action is a remote cache hit
//   3. after clean, no header: GetCapabilities is UNAUTHENTICATED, which Bazel 4.2.3 makes a fatal error
//      (exit 34) before it runs anything; nothing hit or stored
//   4. a read-only token: GetCapabilities says update_enabled=false, which Bazel 4.2.3 also refuses (exit 34)
//      unless told --noremote_upload_local_results; with it, every action is a hit and nothing is stored
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, type BazelRun, bazelStatus, describeRun } from '../bazel/bazel.ts';
import { TARGETS, expectOk, expectOutputs } from '../bazel/expectations.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { AUDIENCE, type TestIdp, startIdp } from '../helpers/oidc-idp.ts';
import { requireTool } from '../helpers/tools.ts';
import { type ExecutorProcess, startExecutorProcess } from './helpers.ts';
import { filesUnder } from '../helpers/files.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');

describe.runIf(haveBazel)('real Bazel against an authenticating larder executor (gRPC)', () => {
  const dir = tempDir('larder-bazel-grpc-auth-');
  const store = join(dir.path, 'store');
  let idp: TestIdp;
  let executor: ExecutorProcess;
  let ws: BazelWorkspace;
  let remote: string;
  let writer: string;
  let coldProcesses = 0;

  beforeAll(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    const config = join(dir.path, 'larder.json');
    await writeFile(
      config,
      JSON.stringify({
        auth: { oidc: { roles: { everyone: ['read'], rules: [{ claim: 'groups', value: 'ci', roles: ['write'] }] } } },
      }),
    );
    executor = await startExecutorProcess([
      '--store',
      `disk:${store}`,
      '--config',
      config,
      '--oidc-issuer',
      idp.issuer,
      '--oidc-audience',
      AUDIENCE,
      '--log-level',
      'info',
    ]);
    remote = `--remote_cache=${executor.url}`;
    writer = await idp.clientCredentialsToken('ci');
    ws = await BazelWorkspace.create();
  });

  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await executor?.stop();
    await idp?.close();
    dir.remove();
  }, 120_000);

  const header = (token: string) => `--remote_header=Authorization=Bearer ${token}`;
  const expectAllHits = (run: BazelRun) => {
    expectOk(run);
    expect(run.summary!.remoteCacheHit, describeRun(run)).toBe(coldProcesses);
    expect(run.summary!.other, run.summary!.line).toEqual({});
  };

  it('1-2. with a token that may write, a cold build fills the cache and a rebuild after clean is all hits', async () => {
    const cold = await ws.build(TARGETS, [remote, header(writer)]);
    expectOk(cold);
    expect(cold.summary!.remoteCacheHit).toBe(0);
    coldProcesses = cold.summary!.nonInternal;
    expect(coldProcesses).toBeGreaterThan(0);
    expect(filesUnder(store)).toContainEqual(expect.stringContaining(join(store, 'blobs')));

    await ws.clean();
    const warm = await ws.build(TARGETS, [remote, header(writer)]);
    expectAllHits(warm);
    await expectOutputs(ws);
  }, 600_000);

  it('3. without the header, Bazel hears UNAUTHENTICATED from GetCapabilities: no hit, nothing stored', async () => {
    await ws.clean();
    const before = filesUnder(store);
    const refused = await ws.build(TARGETS, [remote]);
    expect(refused.exitCode, describeRun(refused)).toBe(34);
    expect(refused.stderr, describeRun(refused)).toMatch(
      /ERROR: Failed to query remote execution capabilities: UNAUTHENTICATED: credentials are required to read/,
    );
    expect(refused.summary, describeRun(refused)).toBeNull();
    expect(filesUnder(store)).toEqual(before);
  }, 600_000);

  it('4. a read-only token needs --noremote_upload_local_results in Bazel 4.2.3, and then is all hits', async () => {
    await ws.clean();
    const reader = header(await idp.clientCredentialsToken('reader'));
    const before = filesUnder(store);
    const refused = await ws.build(TARGETS, [remote, reader]);
    expect(refused.exitCode, describeRun(refused)).toBe(34);
    expect(refused.stderr, describeRun(refused)).toMatch(
      /ERROR: --remote_upload_local_results is set, but the current account is not authorized to write local results to the remote cache/,
    );
    const run = await ws.build(TARGETS, [remote, reader, '--noremote_upload_local_results']);
    expectAllHits(run);
    await expectOutputs(ws);
    expect(filesUnder(store)).toEqual(before);
  }, 600_000);

  it('never logs a token, and logs no error', () => {
    const log = executor.output();
    expect(log, 'the token reached the log').not.toContain(writer);
    expect(log).not.toMatch(/ERROR/);
  });
});
