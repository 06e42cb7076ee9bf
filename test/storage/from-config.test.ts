// openStore builds the store graph from config: a tier in front that breaks is reported through the logger
// it is given (it used to be built without one, so a broken cache disk went unnoticed).
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { blobKey } from '../../shared/digest.ts';
import type { Logger } from '../../shared/log.ts';
import { openStore } from '../../shared/storage/from-config.ts';
import { collect, streamOf } from '../../shared/storage/streams.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { sha256 } from '../helpers/http.ts';
import { bytesOf } from '../helpers/bytes.ts';

const dir = tempDir();
afterAll(() => dir.remove());

function recordingLogger() {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { log, lines };
}

it('logs, as a warning, a front tier that fails, and serves from the back', async () => {
  const { log, lines } = recordingLogger();
  const front = join(dir.path, 'front');
  const store = await openStore(
    {
      kind: 'tiered',
      tiers: [
        { kind: 'disk', path: front, maxBytes: 1 << 24 },
        { kind: 'memory', maxBytes: 1 << 24 },
      ],
    },
    { log },
  );
  const data = randomBytes(100_000);
  const key = blobKey('', 'cas', sha256(data));
  await store.put(key, streamOf(data), data.length);

  // The cache disk breaks: its blob folder is no longer a folder.
  rmSync(join(front, 'blobs'), { recursive: true });
  writeFileSync(join(front, 'blobs'), 'not a folder');
  const blob = await store.get(key);
  expect(bytesOf(await collect(blob!.body, 1 << 20))).toEqual(bytesOf(data));
  expect(lines).toContainEqual(expect.stringMatching(/^warn tier front: get failed/));
  await store.close?.();
});
