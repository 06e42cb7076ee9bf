// What a good build of test/bazel/workspace looks like: shared by every real-Bazel suite.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { type BazelRun, type BazelWorkspace, describeRun } from './bazel.ts';

const execFileAsync = promisify(execFile);

export const TARGETS = ['//:all_outputs'];
const REPORT = 'items: 8\napple,banana,cherry,date\nfig,kiwi,mango,quince\n';
const HELLO = 'hello, larder: every action a cache hit\n';

export function expectOk(run: BazelRun): void {
  expect(run.exitCode, describeRun(run)).toBe(0);
  expect(run.summary, describeRun(run)).not.toBeNull();
}

export async function expectOutputs(ws: BazelWorkspace): Promise<void> {
  expect((await ws.readOutput('report.txt')).toString('utf8')).toBe(REPORT);
  expect((await ws.readOutput('head.txt')).toString('utf8')).toBe('apple\nbanana\ncherry\ndate\n');
  expect((await ws.readOutput('tail.txt')).toString('utf8')).toBe('fig\nkiwi\nmango\nquince\n');
  expect((await ws.readOutput('count.txt')).toString('utf8')).toBe('8\n');
  const hello = await execFileAsync(ws.outputPath('hello'), [], { timeout: 10_000, env: {} });
  expect(hello.stdout).toBe(HELLO);
  const named = await execFileAsync(ws.outputPath('hello'), ['nginx'], { timeout: 10_000, env: {} });
  expect(named.stdout).toBe('hello, nginx: every action a cache hit\n');
}
