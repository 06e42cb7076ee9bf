import { describe } from 'vitest';
import { tempDir } from '../helpers/edge-process.ts';
import { bunPath, requireTool } from '../helpers/tools.ts';
import { describeHttpProtocol } from './http-protocol.ts';

describe.runIf(requireTool('bun', bunPath(), 'npm ci installs it from @oven/bun-linux-x64'))('on Bun', () => {
  describeHttpProtocol('HTTP protocol on Bun, disk store', {
    runtime: 'bun',
    store: async () => {
      const dir = tempDir();
      return { args: ['--store', `disk:${dir.path}`], cleanup: dir.remove };
    },
  });

  describeHttpProtocol('HTTP protocol on Bun, memory store', {
    runtime: 'bun',
    store: async () => ({ args: ['--store', 'memory:1GiB'], cleanup: () => {} }),
    streamsToStorage: false,
  });
});
