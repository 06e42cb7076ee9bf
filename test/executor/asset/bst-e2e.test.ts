/**
 * A real BuildStream (Debian's bst 1.6.8) keeps its artifact cache on `larder executor`: it probes
 * FetchDirectory/PushDirectory with empty requests (INVALID_ARGUMENT: supported), pushes the artifact it built as a
 * Directory tree under `urn:fdc:buildstream.build:2020:v1:…`, and a second checkout with an empty local cache pulls
 * it back (FetchDirectory, then the CAS) instead of building. The project: an `import` element of a busybox sysroot
 * and a `manual` element built on it in bst's sandbox; no network needed.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../helpers/edge-process.ts';
import { findTool, requireTool } from '../../helpers/tools.ts';
import { type ExecutorProcess, startExecutorProcess } from '../helpers.ts';

const run = promisify(execFile);
const bstPath = findTool('bst');
const haveBst =
  requireTool('bst', bstPath, 'apt-get install buildstream') &&
  requireTool('busybox', findTool('/bin/busybox'), 'apt-get install busybox-static');
const MANUAL = `kind: manual
build-depends:
- base.bst
config:
  install-commands:
  - mkdir -p %{install-root}/out
  - echo "built in the sandbox" > %{install-root}/out/made.txt
`;

describe.runIf(haveBst)('real BuildStream with larder as its artifact server', () => {
  const dir = tempDir('larder-bst-');
  let executor: ExecutorProcess;

  beforeAll(async () => {
    const project = join(dir.path, 'project');
    mkdirSync(join(project, 'elements'), { recursive: true });
    mkdirSync(join(project, 'files', 'bin'), { recursive: true });
    copyFileSync('/bin/busybox', join(project, 'files', 'bin', 'busybox'));
    for (const tool of ['sh', 'mkdir', 'echo']) symlinkSync('busybox', join(project, 'files', 'bin', tool));
    writeFileSync(join(project, 'project.conf'), 'name: larder-test\nelement-path: elements\n');
    writeFileSync(join(project, 'elements', 'base.bst'), 'kind: import\nsources:\n- kind: local\n  path: files\n');
    writeFileSync(join(project, 'elements', 'hello.bst'), MANUAL);
    executor = await startExecutorProcess(['--store', `disk:${join(dir.path, 'store')}`, '--workers', '0']);
    for (const cache of ['cache1', 'cache2'])
      writeFileSync(
        join(dir.path, `${cache}.conf`),
        `artifactdir: ${join(dir.path, cache)}\nlogdir: ${join(dir.path, 'logs')}\n` +
          `artifacts:\n  url: http://127.0.0.1:${executor.port}\n  push: true\n`,
      );
  }, 60_000);

  afterAll(async () => {
    await executor?.stop();
    dir.remove();
  });

  const bst = (cache: string, ...args: string[]) =>
    run(bstPath!, ['--no-interactive', '-c', join(dir.path, `${cache}.conf`), ...args], {
      cwd: join(dir.path, 'project'),
      env: { PATH: process.env.PATH, HOME: join(dir.path, 'home'), LANG: 'C.UTF-8' },
      timeout: 120_000,
    }).then(
      ({ stdout, stderr }) => stdout + stderr,
      (err: { stdout?: string; stderr?: string; message: string }) => {
        throw new Error(`bst ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
      },
    );

  it('pushes what it builds, and a fresh cache pulls it back instead of building', async () => {
    const built = await bst('cache1', 'build', 'hello.bst');
    expect(built.match(/Pushed artifact \w+ -> http:\/\/127\.0\.0\.1:\d+/g)).toHaveLength(2);
    expect(built).not.toMatch(/Failed to initialize remote|does not implement/);

    const pulled = await bst('cache2', 'pull', 'hello.bst');
    expect(pulled).toMatch(/Pulled artifact \w+ <- http:\/\/127\.0\.0\.1:\d+/);
    const out = join(dir.path, 'checkout');
    const checkout = await bst('cache2', 'checkout', 'hello.bst', out);
    expect(checkout).not.toMatch(/Build Queue: processed [1-9]/);
    expect(readFileSync(join(out, 'out', 'made.txt'), 'utf8')).toBe('built in the sandbox\n');
  }, 240_000);
});
