// Runs scripts/build.mjs once before any suite: the generated modules and the compiled CLI that tests start
// (bin/larder.js) are then those of the sources being tested.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/tools.ts';

export default function setup(): void {
  execFileSync(process.execPath, [join(REPO_ROOT, 'scripts/build.mjs')], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
    timeout: 120_000,
  });
}
