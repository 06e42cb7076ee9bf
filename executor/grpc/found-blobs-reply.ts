/**
 * A BatchReadBlobsResponse laid out before its blobs are read, on the guess that every one is found (clients ask for
 * blobs FindMissingBlobs just said were there): each response's digest (the client's own bytes, copied from the
 * request as digest-columns.ts does), its data field's key and length with room for the blob after them, and an OK
 * status. The blobs are then read straight into their room (BlobStore.readSmallInto) and the reply is sent as it lies:
 * no buffer and no response object per blob, and each byte written once. Reading a BatchReadBlobs of 1,000 × 1 KiB
 * into a buffer per blob and then copying them all into the reply cost more garbage collection than bazel-remote's
 * whole call (issue 21).
 *
 * A reply in which some blob was not found is not this one: its handler makes the responses one by one, and the
 * encoder writes them as it writes any reply (batch-read-message.ts).
 */
import {
  type BatchReadBlobsResponse,
  Compressor_Value,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Attached } from './attached.ts';
import { framableMessage } from './bytes-message.ts';
import { type DigestColumns, digestsAt, lazyList } from './digest-columns.ts';
import { varintLength, writeVarint } from './digest-lists.ts';
import { blobStatus } from '../reapi/grpc-status.ts';

const RESPONSES_TAG = (1 << 3) | 2;
const DIGEST_TAG = (1 << 3) | 2;
const DATA_TAG = (2 << 3) | 2;
const STATUS_TAG = (3 << 3) | 2;

export interface FoundBlobsLayout {
  /** The whole encoded reply (framableMessage: room for the gRPC prefix in front), but for the blobs' bytes. */
  readonly message: Buffer;
  /** Where each blob's bytes go in `message`: `sizes[i]` bytes from `dataAt[i]`. */
  readonly dataAt: number[];
}

/**
 * The reply to the digests of `columns`, every one found, written but for the blobs' bytes. Every byte of the blob of
 * `sizes[i]` is followed by at least one byte of the reply (its status), so a read of one byte more than the blob
 * (readSmallInto) stays inside the message; the reader restores that byte.
 */
export function layOutFound(columns: DigestColumns): FoundBlobsLayout {
  const { sizes, spans } = columns;
  const count = sizes.length;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const length = responseLength(spans[2 * i + 1]! - spans[2 * i]!, sizes[i]!);
    total += 1 + varintLength(length) + length;
  }
  const message = framableMessage(total);
  const dataAt = new Array<number>(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const size = sizes[i]!;
    const from = spans[2 * i]!;
    const to = spans[2 * i + 1]!;
    message[at++] = RESPONSES_TAG;
    at = writeVarint(message, at, responseLength(to - from, size));
    message[at++] = DIGEST_TAG;
    at += columns.bytes.copy(message, at, from, to);
    // proto3: an empty blob has no data field.
    if (size > 0) {
      message[at++] = DATA_TAG;
      at = writeVarint(message, at, size);
    }
    dataAt[i] = at;
    at += size;
    // An OK status: present, and empty.
    message[at++] = STATUS_TAG;
    message[at++] = 0;
  }
  return { message, dataAt };
}

/** One response's length: the digest (its value as the client wrote it: length prefix and fields), data and status. */
function responseLength(digestValue: number, size: number): number {
  return 1 + digestValue + (size > 0 ? 1 + varintLength(size) + size : 0) + 2;
}

/** Replies made by foundReply, with their bytes and how many blobs they carry. */
const written = new Attached<{ message: Buffer; blobs: number }>('found blobs');

/**
 * The reply whose every blob was read into `layout`: encoded as it lies (`writtenMessage`). Its list of responses is
 * made only if someone reads it (the same objects the handler would have made); a write replaces the list like any
 * field, and the reply is then encoded from the list.
 */
export function foundReply(columns: DigestColumns, layout: FoundBlobsLayout): BatchReadBlobsResponse {
  const reply = {} as BatchReadBlobsResponse;
  written.set(reply, { message: layout.message, blobs: columns.sizes.length });
  lazyList(
    reply,
    'responses',
    () => foundResponses(columns, layout),
    () => written.delete(reply),
  );
  return reply;
}

/** The bytes of a reply made by foundReply whose list was not replaced since, else undefined. */
export function writtenMessage(reply: unknown): Buffer | undefined {
  return typeof reply === 'object' && reply !== null ? written.get(reply)?.message : undefined;
}

/** How many blobs a reply made by foundReply carries, every one of them found; undefined for any other reply. */
export function foundBlobCount(reply: unknown): number | undefined {
  return typeof reply === 'object' && reply !== null ? written.get(reply)?.blobs : undefined;
}

function foundResponses(columns: DigestColumns, { message, dataAt }: FoundBlobsLayout): object[] {
  const ok = blobStatus();
  return digestsAt(columns).map((digest, i) => ({
    digest,
    data: message.subarray(dataAt[i]!, dataAt[i]! + columns.sizes[i]!),
    status: ok,
    compressor: Compressor_Value.IDENTITY,
  }));
}
