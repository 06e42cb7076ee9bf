import { existsSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { denoPath, requireTool } from '../helpers/tools.ts';
import { startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { describeHttpProtocol } from './http-protocol.ts';
import { describe, expect, it } from 'vitest';

describe.runIf(requireTool('deno', denoPath(), 'npm ci installs it from @deno/linux-x64-glibc'))('on Deno', () => {
  describeHttpProtocol('HTTP protocol on Deno, disk store', {
    runtime: 'deno',
    store: async () => {
      const dir = tempDir();
      return { args: ['--store', `disk:${dir.path}`], cleanup: dir.remove };
    },
  });

  // Deno refuses paths under /dev without --allow-all; a RAM disk at /dev/shm is where users try first.
  it.runIf(existsSync('/dev/shm'))(
    'explains how to keep a cache in RAM when given a folder under /dev/shm',
    async () => {
      const path = `/dev/shm/larder-test-${randomUUID()}`;
      try {
        const started = startEdgeProcess({ runtime: 'deno', args: ['--store', `disk:${path}`] });
        await expect(started).rejects.toThrow(
          /paths under \/dev \(such as \/dev\/shm\) only with --allow-all\. For a cache in RAM, use a tmpfs/,
        );
      } finally {
        rmSync(path, { recursive: true, force: true });
      }
    },
  );
});
