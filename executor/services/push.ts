/**
 * Remote Asset API Push.PushBlob: a trusted client (role `write`) says which CAS blob some URIs name, and
 * FetchBlob answers with it from then on without going to an origin. The blob must already be in the CAS;
 * a `checksum.sri` is checked against its bytes before it is recorded, so a checksum record is always true.
 * PushDirectory does the same for the root of a Directory tree, which must be complete in the CAS (BuildStream
 * keeps its artifacts this way, under `urn:` URIs).
 */
import { createHash } from 'node:crypto';
import { blobKey } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Push } from '../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import { digestOf } from '../reapi/digests.ts';
import { Code, RpcError } from '../reapi/grpc-status.ts';
import type { ServiceHandlers } from '../grpc/adapt.ts';
import { firstMissing } from './asset/directory-tree.ts';
import type { Checksum } from './asset/qualifiers.ts';
import { recordRef, writeRecord } from './asset/records.ts';
import { instantOf, parseAssetRequest } from './asset/request.ts';

export interface PushDeps {
  store: BlobStore;
  log: Logger;
  now?: () => number;
}

export function pushService(deps: PushDeps): ServiceHandlers<typeof Push> {
  const { store, log } = deps;
  const now = deps.now ?? Date.now;
  return {
    async pushBlob(request) {
      const asset = parseAssetRequest(request);
      const digest = digestOf(request.blobDigest, 'blob_digest');
      const key = blobKey(asset.instance, 'cas', digest.hash);
      if ((await store.stat(key)) !== digest.sizeBytes)
        throw new RpcError(
          Code.FAILED_PRECONDITION,
          `blob ${digest.hash}/${digest.sizeBytes} is not in the CAS: upload it first`,
        );
      const checksum = asset.qualifiers.checksum;
      if (checksum !== null) await checkChecksum(store, key, checksum);
      const record = { digest, since: now(), expireAt: instantOf(request.expireAt) };
      for (const uri of asset.uris)
        await writeRecord(store, recordRef(asset.instance, { uri, identity: asset.qualifiers.identity }), record);
      if (checksum !== null) await writeRecord(store, recordRef(asset.instance, { checksum }), record);
      log.debug('PushBlob recorded', { uris: asset.uris.length, hash: digest.hash });
      return {};
    },

    async pushDirectory(request) {
      const asset = parseAssetRequest(request);
      const root = digestOf(request.rootDirectoryDigest, 'root_directory_digest');
      const missing = await firstMissing(store, asset.instance, root);
      if (missing !== null)
        throw new RpcError(
          Code.FAILED_PRECONDITION,
          `the tree under ${root.hash} is not all in the CAS: ${missing} is missing`,
        );
      const record = { digest: root, since: now(), expireAt: instantOf(request.expireAt) };
      for (const uri of asset.uris) {
        const ref = recordRef(asset.instance, { uri, identity: asset.qualifiers.identity }, 'directory');
        await writeRecord(store, ref, record);
      }
      log.debug('PushDirectory recorded', { uris: asset.uris.length, hash: root.hash });
      return {};
    },
  };
}

/** Reads the stored blob and compares its digest under the checksum's algorithm. */
async function checkChecksum(store: BlobStore, key: ReturnType<typeof blobKey>, checksum: Checksum): Promise<void> {
  if (checksum.algorithm === 'sha256') {
    if (checksum.hex === key.hash) return;
  } else {
    const blob = await store.get(key);
    if (blob === null) throw new RpcError(Code.FAILED_PRECONDITION, `blob ${key.hash} left the CAS while pushing`);
    const hash = createHash(checksum.algorithm);
    for await (const chunk of blob.body) hash.update(chunk);
    if (hash.digest('hex') === checksum.hex) return;
  }
  throw new LarderError('invalid_argument', `checksum.sri ${checksum.sri} does not match the blob ${key.hash}`);
}
