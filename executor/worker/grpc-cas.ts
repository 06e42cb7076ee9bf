/**
 * `WorkerCas` over a frontend's REAPI CAS (gRPC), for a worker in its own process: small blobs in
 * BatchReadBlobs/BatchUpdateBlobs calls (many outputs to one call, see upload-blobs.ts), large ones streamed
 * over ByteStream in 1 MiB chunks, never held whole. Every byte read is checked against its digest before an action sees it (the file cache would spread a
 * corrupt blob to every later action); uploads are checked by the frontend, which refuses a mismatch.
 * The action cache is written with UpdateActionResult (the worker's credentials need the `write` role).
 */
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { createHash, randomUUID } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { type Digest, formatDigest, isEmptyDigest } from '../../shared/digest.ts';
import { LarderError } from '../../shared/errors.ts';
import type { ActionResult } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { WriteRequestSchema } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { digestMessage } from '../reapi/digests.ts';
import type { WorkerCas } from './cas.ts';
import type { Frontend } from './frontend.ts';
import { readWhole } from './output-file.ts';

/**
 * Blobs up to this size go in batch calls, and one batch carries at most this much: well under every server's
 * batch limit (4 MiB by default, and larder's --max-batch-size) with room for the request's framing.
 */
const BATCH_BYTES = 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;
/** Digests per FindMissingBlobs call. */
const FIND_MISSING_CHUNK = 4096;

export function grpcCas(frontend: Frontend, instance: string): WorkerCas {
  const meta = () => ({ metadata: frontend.metadata() });
  const resource = (digest: Digest) => `${instance === '' ? '' : `${instance}/`}blobs/${formatDigest(digest)}`;

  /** One blob by BatchReadBlobs; null when the CAS lacks it. */
  async function batchRead(digest: Digest): Promise<Uint8Array | null> {
    const reply = await call('BatchReadBlobs', () =>
      frontend.cas.batchReadBlobs({ instanceName: instance, digests: [digestMessage(digest)] }, meta()),
    );
    const entry = reply.responses[0];
    if (entry === undefined || entry.status?.code === grpc.status.NOT_FOUND) return null;
    if ((entry.status?.code ?? 0) !== 0)
      throw new LarderError(
        'unavailable',
        `frontend ${frontend.url}: BatchReadBlobs ${formatDigest(digest)}: ${entry.status?.message}`,
      );
    return entry.data;
  }

  /**
   * Streams a blob by ByteStream Read into `sink`; false when the CAS lacks it. An aborted `signal` ends the
   * call (leaving the loop cancels it) and rejects with the signal's reason.
   */
  async function streamRead(
    digest: Digest,
    sink: (chunk: Uint8Array) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const stream = frontend.bytestream.read({ resourceName: resource(digest) }, meta());
    try {
      for await (const part of stream) {
        signal?.throwIfAborted();
        await sink(part.data);
      }
      return true;
    } catch (err) {
      if (signal?.aborted) {
        (stream as Partial<grpc.ClientReadableStream<unknown>>).cancel?.(); // the frontend stops sending too
        throw signal.reason;
      }
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return false;
      throw wrap('ByteStream.Read', err);
    }
  }

  /** Several blobs in one BatchUpdateBlobs call; any blob the frontend refuses fails the whole upload. */
  async function batchUpload(blobs: ReadonlyArray<{ digest: Digest; bytes: Uint8Array }>): Promise<void> {
    if (blobs.length === 0) return;
    const reply = await call('BatchUpdateBlobs', () =>
      frontend.cas.batchUpdateBlobs(
        {
          instanceName: instance,
          requests: blobs.map(({ digest, bytes }) => ({ digest: digestMessage(digest), data: bytes })),
        },
        meta(),
      ),
    );
    const refused = reply.responses.find((r) => (r.status?.code ?? 0) !== 0);
    if (refused !== undefined)
      throw new LarderError(
        'unavailable',
        `frontend ${frontend.url}: BatchUpdateBlobs ${refused.digest?.hash}/${refused.digest?.sizeBytes}: ${refused.status?.message}`,
      );
  }

  async function streamUpload(digest: Digest, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const resourceName = `${instance === '' ? '' : `${instance}/`}uploads/${randomUUID()}/blobs/${formatDigest(digest)}`;
    async function* requests() {
      let offset = 0n;
      let first = true;
      for await (const data of chunks) {
        yield create(WriteRequestSchema, {
          resourceName: first ? resourceName : '',
          writeOffset: offset,
          data,
          finishWrite: false,
        });
        offset += BigInt(data.byteLength);
        first = false;
      }
      yield create(WriteRequestSchema, {
        resourceName: first ? resourceName : '',
        writeOffset: offset,
        finishWrite: true,
      });
    }
    await call('ByteStream.Write', () => frontend.bytestream.write(requests(), meta()));
  }

  async function isPresent(digest: Digest): Promise<boolean> {
    return isEmptyDigest(digest) || (await cas.findMissing([digest])).length === 0;
  }

  const cas: WorkerCas = {
    async readBytes(digest, maxBytes) {
      if (digest.sizeBytes > maxBytes)
        throw new LarderError(
          'too_large',
          `blob ${formatDigest(digest)} is over the ${maxBytes}-byte limit for buffered reads`,
        );
      if (isEmptyDigest(digest)) return new Uint8Array(0);
      let bytes: Uint8Array | null;
      if (digest.sizeBytes <= BATCH_BYTES) {
        bytes = await batchRead(digest);
      } else {
        const parts: Uint8Array[] = [];
        bytes = (await streamRead(digest, async (chunk) => void parts.push(chunk))) ? Buffer.concat(parts) : null;
      }
      if (bytes === null) return null;
      check(digest, createHash('sha256').update(bytes).digest('hex'), bytes.byteLength);
      return bytes;
    },

    async readToFile(digest, path, signal) {
      signal?.throwIfAborted();
      const file = await open(path, 'wx', 0o600);
      try {
        const hash = createHash('sha256');
        let size = 0;
        const sink = async (chunk: Uint8Array) => {
          hash.update(chunk);
          size += chunk.byteLength;
          await file.write(chunk);
        };
        let found = true;
        if (isEmptyDigest(digest)) {
          // nothing to fetch
        } else if (digest.sizeBytes <= BATCH_BYTES) {
          const bytes = await batchRead(digest);
          if (bytes === null) found = false;
          else await sink(bytes);
        } else {
          found = await streamRead(digest, sink, signal);
        }
        if (found) check(digest, hash.digest('hex'), size);
        await file.close();
        if (!found) await rm(path, { force: true });
        return found;
      } catch (err) {
        await file.close().catch(() => {});
        await rm(path, { force: true });
        throw err;
      }
    },

    async findMissing(digests) {
      const missing: Digest[] = [];
      for (let at = 0; at < digests.length; at += FIND_MISSING_CHUNK) {
        const chunk = digests.slice(at, at + FIND_MISSING_CHUNK);
        const reply = await call('FindMissingBlobs', () =>
          frontend.cas.findMissingBlobs({ instanceName: instance, blobDigests: chunk.map(digestMessage) }, meta()),
        );
        const absent = new Set(reply.missingBlobDigests.map(formatDigest));
        missing.push(...chunk.filter((d) => absent.has(formatDigest(d))));
      }
      return missing;
    },

    maxBatchBytes: BATCH_BYTES,

    uploadBatch: batchUpload,

    async uploadBytes(digest, bytes) {
      if (digest.sizeBytes <= BATCH_BYTES) return batchUpload([{ digest, bytes }]);
      if (await isPresent(digest)) return;
      const chunks = function* () {
        for (let at = 0; at < bytes.byteLength; at += CHUNK_BYTES) yield bytes.subarray(at, at + CHUNK_BYTES);
      };
      await streamUpload(digest, chunks());
    },

    async uploadFile(digest, file) {
      if (digest.sizeBytes <= BATCH_BYTES)
        return batchUpload([{ digest, bytes: await readWhole(file, digest.sizeBytes) }]);
      if (await isPresent(digest)) return;
      await streamUpload(digest, file.createReadStream({ start: 0, highWaterMark: CHUNK_BYTES, autoClose: false }));
    },
  };
  return cas;

  async function call<T>(method: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw wrap(method, err);
    }
  }

  function wrap(method: string, err: unknown): Error {
    if (err instanceof LarderError) return err;
    const e = err as grpc.ServiceError;
    return new LarderError('unavailable', `frontend ${frontend.url}: ${method} failed: ${e.details ?? e.message}`);
  }
}

/** Writes a successful result to the frontend's action cache (UpdateActionResult). */
export function grpcActionCacheWriter(frontend: Frontend) {
  return async (instance: string, actionDigest: Digest, result: ActionResult): Promise<void> => {
    try {
      await frontend.ac.updateActionResult(
        { instanceName: instance, actionDigest: digestMessage(actionDigest), actionResult: result },
        { metadata: frontend.metadata() },
      );
    } catch (err) {
      throw new LarderError(
        'unavailable',
        `frontend ${frontend.url}: UpdateActionResult failed: ${(err as grpc.ServiceError).details ?? (err as Error).message}`,
      );
    }
  };
}

function check(digest: Digest, actual: string, size: number): void {
  if (size !== digest.sizeBytes || actual !== digest.hash) {
    throw new LarderError(
      'digest_mismatch',
      `cas read ${formatDigest(digest)}: the frontend sent ${size} bytes hashing to ${actual}`,
    );
  }
}
