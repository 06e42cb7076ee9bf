import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    // Builds what the suites run (scripts/build.mjs), so a test never runs yesterday's build.
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites start real servers, Bazel and Deno; on a 2-core machine running them two at a time is the sweet spot.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
