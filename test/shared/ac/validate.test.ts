// Action-cache validation looks up every output of an entry: with thousands of outputs those lookups
// must be bounded, or a store behind a network (S3) gets thousands of HEADs at once.
import { create } from '@bufbuild/protobuf';
import { expect, it } from 'vitest';
import { outputsPresent } from '../../../shared/ac/validate.ts';
import { blobKey } from '../../../shared/digest.ts';
import {
  ActionResultSchema,
  DigestSchema,
  OutputFileSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { MemoryStore } from '../../../shared/storage/memory.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { streamOf } from '../../../shared/storage/streams.ts';
import { sha256 } from '../../helpers/http.ts';

/** A real memory store that records how many stat calls were in flight at most. */
function counting(inner: BlobStore) {
  const seen = { inFlight: 0, most: 0, calls: 0 };
  const store: BlobStore = {
    get: (key) => inner.get(key),
    put: (key, body, size) => inner.put(key, body, size),
    async stat(key) {
      seen.calls++;
      seen.most = Math.max(seen.most, ++seen.inFlight);
      try {
        // Answer on a later turn, as any store behind I/O does.
        await new Promise((resolve) => setImmediate(resolve));
        return await inner.stat(key);
      } finally {
        seen.inFlight--;
      }
    },
  };
  return { store, seen };
}

it('checks 2,000 outputs with a bounded number of lookups in flight', async () => {
  const memory = new MemoryStore({ maxBytes: 1 << 24 });
  const outputs = [];
  for (let i = 0; i < 2000; i++) {
    const data = Buffer.from(`output ${i}`);
    const hash = sha256(data);
    await memory.put(blobKey('', 'cas', hash), streamOf(data), data.length);
    outputs.push(
      create(OutputFileSchema, {
        path: `out/${i}`,
        digest: create(DigestSchema, { hash, sizeBytes: BigInt(data.length) }),
      }),
    );
  }
  const { store, seen } = counting(memory);
  expect(await outputsPresent(store, '', create(ActionResultSchema, { outputFiles: outputs }))).toBe(true);
  expect(seen.calls).toBe(2000);
  expect(seen.most).toBeLessThanOrEqual(32);
});
