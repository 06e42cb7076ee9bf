// The README is the first thing users try: its configuration reference must list every option the code has.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { EXECUTOR_OPTIONS } from '../executor/config/executor-options.ts';
import { WORKER_OPTIONS } from '../executor/config/worker-options.ts';
import { EDGE_OPTIONS } from '../shared/config.ts';
import { REPO_ROOT } from './helpers/tools.ts';

it('documents every edge, executor and worker option with its environment variable', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  for (const option of [...EDGE_OPTIONS, ...EXECUTOR_OPTIONS, ...WORKER_OPTIONS]) {
    expect(readme, option.flag).toContain(`\`--${option.flag}`);
    expect(readme, option.env).toContain(`\`${option.env}\``);
  }
});
