/**
 * google.bytestream.ByteStream over the CAS: Read, Write (resumable) and QueryWriteStatus. The
 * streaming work lives in executor/bytestream/; this file only wires requests to it.
 */
import { blobKey, isEmptyDigest } from '../../shared/digest.ts';
import type { ByteStream } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';
import { readBlob } from '../bytestream/read.ts';
import { parseWriteName } from '../bytestream/resource-name.ts';
import { type WriteDeps, writeBlob } from '../bytestream/write.ts';

export function byteStreamService(deps: WriteDeps): ServiceHandlers<typeof ByteStream> {
  return {
    async read(request, _ctx, send) {
      await readBlob(deps, request, (data, written) => send({ data }, written));
    },

    async write(requests, ctx) {
      return { committedSize: await writeBlob(deps, requests, ctx.signal) };
    },

    async queryWriteStatus(request) {
      const name = request.resourceName;
      const resource = parseWriteName(name);
      const kept = deps.uploads.committed(name);
      if (kept > 0) return { committedSize: BigInt(kept), complete: false };
      const { digest } = resource;
      const stored = await deps.store.stat(blobKey(resource.instance, 'cas', digest.hash));
      if (stored === digest.sizeBytes || isEmptyDigest(digest)) {
        // The blob is there, whoever uploaded it. REAPI reports -1 for compressed uploads, whose
        // compressed length this server cannot know.
        return { committedSize: resource.encoding === 'identity' ? BigInt(digest.sizeBytes) : -1n, complete: true };
      }
      // Nothing kept: the client starts over from offset 0.
      return { committedSize: 0n, complete: false };
    },
  };
}
