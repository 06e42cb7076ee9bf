// The real Bazel client (Debian's 4.2.3) building the test workspace through `larder executor` with remote
// execution only (no local fallback): genrules, a tree artifact, an empty output, a cc_binary that a genrule
// then runs, and the JSON worker's actions as one-shot commands. One workspace and one executor process serve
// every step, so only the first build and the local comparison build are cold.
import { lstat, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus, describeRun, remoteExecutionFlags, type BazelRun } from '../../bazel/bazel.ts';
import { expectOk, expectOutputs } from '../../bazel/expectations.ts';
import { requireTool } from '../../helpers/tools.ts';
import { type ExecutorProcess, reachableTempDir, startExecutorProcess } from '../helpers.ts';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');

const TARGETS = ['//:remote_outputs'];
/** Outputs compared byte for byte (and by executable bit) between the remote and the local build. */
const OUTPUTS = [
  'report.txt',
  'head.txt',
  'tail.txt',
  'count.txt',
  'hello',
  'empty.txt',
  'greeting.txt',
  'tree',
  'upper',
];

describe.runIf(haveBazel)('real Bazel with --remote_executor against larder executor', () => {
  const dir = reachableTempDir('larder-bazel-remote-');
  let executor: ExecutorProcess;
  let ws: BazelWorkspace;
  let remoteFlags: string[];
  let remoteOutputs: Map<string, string>;
  let coldProcesses = 0;

  beforeAll(async () => {
    executor = await startExecutorProcess(['--store', `disk:${join(dir, 'store')}`, '--work-dir', join(dir, 'work')]);
    remoteFlags = [...remoteExecutionFlags(executor.url), '--remote_default_exec_properties=OSFamily=Linux'];
    ws = await BazelWorkspace.create();
  }, 120_000);
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await executor?.stop();
  }, 120_000);

  it('a cold build runs every non-internal action remotely, with the right outputs', async () => {
    const run = await ws.build(TARGETS, remoteFlags);
    expectOk(run);
    const summary = run.summary!;
    expect(summary.nonInternal, summary.line).toBeGreaterThan(10);
    expect(summary.other, summary.line).toEqual({ remote: summary.nonInternal });
    coldProcesses = summary.nonInternal;
    await expectOutputs(ws);
    expect((await ws.readOutput('greeting.txt')).toString()).toBe('hello, remote: every action a cache hit\n');
    expect((await ws.readOutput('empty.txt')).byteLength).toBe(0);
    expect((await ws.readOutput('upper/FRUITS.TXT')).toString()).toMatch(/^APPLE\n/m);
    expect((await ws.readOutput('tree/nested/deeper/file.txt')).toString()).toBe('nested\n');
    remoteOutputs = await snapshot(ws);
  }, 600_000);

  it('after bazel clean, the rebuild is all remote cache hits', async () => {
    await ws.clean();
    const run = await ws.build(TARGETS, remoteFlags);
    expectOk(run);
    expect(run.summary!.remoteCacheHit, run.summary!.line).toBe(coldProcesses);
    expect(run.summary!.other, run.summary!.line).toEqual({});
    expect(await snapshot(ws)).toEqual(remoteOutputs);
  }, 600_000);

  it('a failing action shows Bazel its stderr and exit code', async () => {
    const run = await ws.build(['//:fails'], remoteFlags);
    expect(run.exitCode, describeRun(run)).not.toBe(0);
    expect(run.stderr).toContain('larder-test: this action fails on purpose');
    expect(run.stderr).toMatch(/Exit 3/);
  }, 300_000);

  it('outputs are byte-identical, exec bits included, to a local build', async () => {
    await ws.clean();
    const local: BazelRun = await ws.build(TARGETS, []);
    expectOk(local);
    expect(local.summary!.other.remote, local.summary!.line).toBeUndefined();
    expect(await snapshot(ws)).toEqual(remoteOutputs);
  }, 600_000);
});

/**
 * Every output file under bazel-bin: path → executable bit and content. Parameter files (`*.params`) are left
 * out: Bazel writes them beside outputs for local runs only; remotely they are inputs of the action.
 */
async function snapshot(ws: BazelWorkspace): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const visit = async (relative: string) => {
    const path = ws.outputPath(relative);
    const info = await lstat(path);
    if (info.isDirectory()) {
      for (const name of (await readdir(path)).sort()) await visit(join(relative, name));
      return;
    }
    if (relative.endsWith('.params')) return;
    const executable = (info.mode & 0o100) !== 0;
    files.set(relative, `${executable ? 'x' : '-'} ${(await readFile(path)).toString('base64')}`);
  };
  for (const output of OUTPUTS) await visit(output);
  return files;
}
