/**
 * What FetchBlob and PushBlob remember: which CAS blob a URI (with its identifying qualifiers) or a checksum
 * named, and since when. A record is a small JSON value in the `ac` key space under a key derived from
 * `larder-asset-v1` plus the URI or checksum, so it never meets a real action digest, lives and is evicted
 * with the rest of the instance's cache, and needs no store of its own.
 *
 * A record only counts while its blob is still in the CAS at the recorded size: an answer always names
 * content the client can download.
 */
import { createHash } from 'node:crypto';
import { type BlobKey, blobKey, type Digest } from '../../../shared/digest.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { statMany } from '../../../shared/storage/stat-many.ts';
import { readWhole } from '../../../shared/storage/streams.ts';
import type { Checksum } from './qualifiers.ts';

export interface AssetRecord {
  digest: Digest;
  /** When the content was fetched from origin or pushed (ms since the epoch): what `oldest_content_accepted` is compared to. */
  since: number;
  /** After this instant (ms since the epoch) the record no longer answers; null: no expiry. */
  expireAt: number | null;
}

/** Blob records (FetchBlob, PushBlob) and directory records (FetchDirectory, PushDirectory) never answer for each other. */
export type RecordSpace = 'blob' | 'directory';

/** What a record is looked up by: a URI with its identifying qualifiers, or a checksum alone. */
export type RecordName = { uri: string; identity: ReadonlyArray<[string, string]> } | { checksum: Checksum };

/**
 * A record's name worked out once: the text its store key is hashed from, and its key among the records this
 * process knows. FetchBlob keeps these with each request it has parsed (request-memo.ts), so looking a record up
 * again builds no text.
 */
export interface RecordRef {
  readonly instance: string;
  /** What the store key is hashed from: the same text for the same name in every larder version that wrote it. */
  readonly text: string;
  /** The record's key in `recent` (instance and text). */
  readonly recentKey: string;
}

/** A record as this process last read or wrote it, with the CAS key of its blob, which every answer asks about. */
interface Known {
  record: AssetRecord;
  blob: BlobKey;
}

const MAX_RECORD_BYTES = 1024;

/**
 * Records this process read or wrote lately, so a cached FetchBlob costs a stat of its blob, as a
 * FindMissingBlobs would, rather than an open and read of its record too. Safe to keep: a record only ever
 * names verified content with the time it was fetched, and the blob's presence is still asked of the store on
 * every answer. What it may miss is a newer record another process wrote, which costs nothing worse than
 * serving the content this process last saw (a client that wants newer sets oldest_content_accepted). Bounded
 * in count: the entry remembered first goes first (a hit does not move an entry, which would cost more than the
 * store read it saves the rare entry that falls out while still in use).
 */
const recentByStore = new WeakMap<BlobStore, Map<string, Known>>();
const RECENT_LIMIT = 10_000;

function recentOf(store: BlobStore): Map<string, Known> {
  const known = recentByStore.get(store);
  if (known !== undefined) return known;
  const recent = new Map<string, Known>();
  recentByStore.set(store, recent);
  return recent;
}

function remember(store: BlobStore, ref: RecordRef, record: AssetRecord): Known {
  const recent = recentOf(store);
  const known = { record, blob: blobKey(ref.instance, 'cas', record.digest.hash) };
  recent.delete(ref.recentKey);
  recent.set(ref.recentKey, known);
  if (recent.size > RECENT_LIMIT) recent.delete(recent.keys().next().value!);
  return known;
}

/** The name of a record as text: its prefix keeps blob and directory records, URIs and checksums apart. */
export function recordRef(instance: string, name: RecordName, space: RecordSpace = 'blob'): RecordRef {
  const prefix = space === 'blob' ? 'larder-asset-v1' : 'larder-asset-v1-directory';
  const text =
    'uri' in name
      ? `${prefix}\nuri\n${name.uri}\n${JSON.stringify(name.identity)}`
      : `${prefix}\nchecksum\n${name.checksum.algorithm}\n${name.checksum.hex}`;
  return { instance, text, recentKey: `${instance}\n${text}` };
}

/** The record's key in the store; hashed only when the store is asked, not for an answer from `recent`. */
function storeKey(ref: RecordRef): BlobKey {
  return blobKey(ref.instance, 'ac', createHash('sha256').update(ref.text).digest('hex'));
}

export async function writeRecord(store: BlobStore, ref: RecordRef, record: AssetRecord): Promise<void> {
  const bytes = new TextEncoder().encode(
    JSON.stringify({
      hash: record.digest.hash,
      size: record.digest.sizeBytes,
      since: record.since,
      expireAt: record.expireAt,
    }),
  );
  await store.put(storeKey(ref), bytes, bytes.byteLength);
  remember(store, ref, record);
}

/**
 * The record `ref` names if it is still good: not expired at `now`, not older than `oldest` (ms; null: any
 * age), and its blob still in the CAS. Anything else, an unreadable record included, is a miss.
 */
export async function readRecord(
  store: BlobStore,
  ref: RecordRef,
  when: { now: number; oldest: number | null },
): Promise<AssetRecord | null> {
  let known = recentOf(store).get(ref.recentKey);
  if (known === undefined) {
    const stored = await readStored(store, storeKey(ref));
    if (stored === null) return null;
    known = remember(store, ref, stored);
  }
  const { record, blob } = known;
  if (record.expireAt !== null && record.expireAt <= when.now) return null;
  if (when.oldest !== null && record.since < when.oldest) return null;
  const size = await casSize(store, blob);
  return size === record.digest.sizeBytes ? record : null;
}

/**
 * The size of a CAS blob, asked the way FindMissingBlobs asks (statMany: a disk store answers from its index
 * with no system call), so a FetchBlob answered from the cache costs what a FindMissingBlobs of its digest
 * would. Where that answer is "not known" (statMany may say so of a blob it cannot vouch for cheaply, e.g. one
 * a bucket index has forgotten) the store is asked outright: with the origin down, the blob is the only copy.
 */
export async function casSize(store: BlobStore, key: BlobKey): Promise<number | null> {
  const [known] = await statMany(store, [key], 1);
  return known ?? (await store.stat(key));
}

/** A record as the store holds it; null when there is none or it cannot be read. */
async function readStored(store: BlobStore, key: BlobKey): Promise<AssetRecord | null> {
  const blob = await store.get(key);
  if (blob === null) return null;
  let record: AssetRecord;
  try {
    const value = JSON.parse(new TextDecoder().decode(await readWhole(blob, MAX_RECORD_BYTES)));
    record = { digest: { hash: value.hash, sizeBytes: value.size }, since: value.since, expireAt: value.expireAt };
    blobKey(key.instance, 'cas', record.digest.hash);
    if (!Number.isSafeInteger(record.digest.sizeBytes) || typeof record.since !== 'number') return null;
  } catch {
    return null;
  }
  return record;
}
