/** Moves a spooled download into the CAS: adopted (renamed) where the store can, else copied in and verified. */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { blobKey, type Digest } from '../../../shared/digest.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import type { Download } from './upstream.ts';

export async function storeDownload(store: BlobStore, instance: string, download: Download): Promise<Digest> {
  const key = blobKey(instance, 'cas', download.sha256);
  const adopted = (await store.adopt?.(key, download.path, download.size, download.sha256)) ?? false;
  if (!adopted) {
    const body = Readable.toWeb(createReadStream(download.path)) as ReadableStream<Uint8Array>;
    await store.put(key, body, download.size);
  }
  return { hash: download.sha256, sizeBytes: download.size };
}
