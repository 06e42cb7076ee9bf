// The spawner captures what a command writes into its stdout and stderr files, and makes no file for a stream that
// carried nothing (the worker reads a missing file as empty output).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Spawner } from '../../../executor/runner/spawner/spawner.ts';

const dir = mkdtempSync(join(tmpdir(), 'larder-spawner-test-'));
const spawner = new Spawner();
afterAll(() => {
  spawner.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(name: string, script: string) {
  const paths = { stdoutPath: join(dir, `${name}.out`), stderrPath: join(dir, `${name}.err`) };
  const command = spawner.run({
    argv: ['/bin/sh', '-c', script],
    cwd: dir,
    env: { PATH: '/usr/bin:/bin' },
    user: null,
    maxOutputBytes: 1024,
    cgroup: null,
    ...paths,
  });
  expect('pid' in (await command.started)).toBe(true);
  expect((await command.exited).code).toBe(0);
  expect(await command.output).toEqual({ truncated: false, writeError: null });
  return paths;
}

describe('Spawner output capture', () => {
  it('makes no file for a stream the command wrote nothing to', async () => {
    const { stdoutPath, stderrPath } = await run('quiet', 'exit 0');
    expect(existsSync(stdoutPath)).toBe(false);
    expect(existsSync(stderrPath)).toBe(false);
  });

  it('writes each stream that carried bytes, and only that one', async () => {
    const { stdoutPath, stderrPath } = await run('stdout-only', 'echo out');
    expect(readFileSync(stdoutPath, 'utf8')).toBe('out\n');
    expect(existsSync(stderrPath)).toBe(false);
    const both = await run('both', 'echo out; echo err >&2');
    expect(readFileSync(both.stdoutPath, 'utf8')).toBe('out\n');
    expect(readFileSync(both.stderrPath, 'utf8')).toBe('err\n');
  });

  it('cuts the two streams together at the bound', async () => {
    const stdoutPath = join(dir, 'big.out');
    const command = spawner.run({
      argv: ['/bin/sh', '-c', 'head -c 4000 /dev/zero'],
      cwd: dir,
      env: { PATH: '/usr/bin:/bin' },
      user: null,
      maxOutputBytes: 1024,
      cgroup: null,
      stdoutPath,
      stderrPath: join(dir, 'big.err'),
    });
    expect(await command.output).toEqual({ truncated: true, writeError: null });
    expect(readFileSync(stdoutPath).byteLength).toBe(1024);
  });
});
