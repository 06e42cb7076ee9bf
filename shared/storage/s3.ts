/**
 * Blobs as objects in an S3 bucket (AWS S3, MinIO, R2): the durable tier, and on Deno Deploy the only one.
 * Put a memory or disk tier in front of it (tiered.ts): every call here is a network round trip.
 *
 * Keys: `{prefix}/{instance}/{ac|cas}/{hash}`, the instance written as `_default` for the default one and as
 * `i-{name}` otherwise. Instance names are validated (shared/digest.ts: segments of letters, digits, `_.-`,
 * none starting with '.'), so they are safe in a key as they are, and the `i-` marker keeps any name from ever
 * meeting `_default`.
 *
 * - stat is HeadObject; it never downloads. statWritten also gives the object's Last-Modified.
 * - get streams the object body straight out, with backpressure.
 * - put: a blob up to one part (8 MiB) is buffered and sent as one PutObject with a known length, after the
 *   body has ended cleanly; a larger one goes up as a multipart upload (s3-upload.ts), completed only after
 *   the body ended cleanly and aborted otherwise. Either way a rejected upload publishes nothing. A small CAS
 *   blob whose PutObject is already in flight is not sent again: its body, read whole (and so verified above),
 *   is the same content, and the upload waits for that PutObject instead (sending its own if that one fails).
 *   Builds upload the same outputs from many actions at once, and each S3 request is billed.
 * - Faults: each attempt gives up after a third of `timeoutMs` without progress, the SDK retries transient
 *   failures with jittered backoff (3 attempts), and a request that has not answered within `timeoutMs`
 *   overall is abandoned: errors map to 'unavailable' (503) or 'timeout' (504), see s3-errors.ts. The
 *   client keeps no state about failures, so it recovers as soon as S3 answers again.
 * No size budget: expire old objects with a bucket lifecycle rule.
 */
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { FetchHttpHandler } from '@smithy/fetch-http-handler';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { BlobKey, BlobKind } from '../digest.ts';
import type { S3Config } from './s3-config.ts';
import { objectBody } from './s3-body.ts';
import { isMissing, s3Error } from './s3-errors.ts';
import { putMultipart } from './s3-upload.ts';
import type { BlobBody, BlobStore, StoredBlob } from './store.ts';
import { bodyError, bodyStream, collect } from './streams.ts';

export interface S3StoreOptions extends Omit<S3Config, 'kind'> {
  /** Multipart part size, and the largest blob sent as one PutObject (buffered). Default 8 MiB; S3 needs ≥ 5 MiB. */
  partBytes?: number;
  /** Parts of one upload in flight at once. Default 2. */
  partConcurrency?: number;
  /** Fixed credentials; by default the SDK's provider chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Told of every S3 request's attempts and of every request that failed for good (for metrics). */
  observer?: S3Observer;
}

export interface S3Observer {
  /** `operation` is the S3 API name (HeadObject, PutObject, UploadPart, …); attempts ≥ 1. */
  attempts(operation: string, attempts: number): void;
  /** `reason` is the LarderError code the failure became (unavailable, timeout, …). */
  failed(operation: string, reason: string): void;
}

/** Any S3 command; #send's callers name the output type they expect. */
type Command = object;

const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
const MAX_PARTS = 10_000;

export class S3Store implements BlobStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #attemptMs: number;
  readonly #partBytes: number;
  readonly #concurrency: number;
  readonly #observer: S3Observer | undefined;
  /** PutObjects of small CAS blobs in flight, by object key. */
  readonly #casPutsInFlight = new Map<string, Promise<unknown>>();

  constructor(options: S3StoreOptions) {
    this.#bucket = options.bucket;
    this.#prefix = options.prefix === '' ? '' : `${options.prefix}/`;
    this.#timeoutMs = options.timeoutMs;
    this.#partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
    this.#concurrency = options.partConcurrency ?? 2;
    this.#observer = options.observer;
    const attemptMs = Math.max(100, Math.round(options.timeoutMs / 3));
    this.#attemptMs = attemptMs;
    this.#client = new S3Client({
      region: options.region,
      ...(options.endpoint === null ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      maxAttempts: 3,
      // Failures reach callers as LarderErrors; the SDK's own console warnings would only repeat them.
      logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
      // Checksums only where S3 requires them: MinIO, R2 and older gateways differ in which trailing
      // checksums they accept, and integrity is already checked end to end by the verifier.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: httpHandler(attemptMs),
      // The SDK's default user agent asks the OS for its release, which Deno Deploy does not allow (sys access).
      ...('Deno' in globalThis ? { defaultUserAgentProvider: async () => [['larder'] as [string]] } : {}),
    });
  }

  async stat(key: BlobKey): Promise<number | null> {
    return (await this.statWritten(key))?.size ?? null;
  }

  /** HeadObject's size and Last-Modified: a bucket index (indexed.ts) dates its entries by the latter. */
  async statWritten(key: BlobKey): Promise<{ size: number; writtenAt: number } | null> {
    try {
      const head = await this.#send<{ ContentLength?: number; LastModified?: Date }>(
        new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }),
        `HEAD ${describe(key)}`,
      );
      return { size: head.ContentLength ?? 0, writtenAt: head.LastModified?.getTime() ?? Date.now() };
    } catch (err) {
      if (isMissing((err as Error).cause)) return null;
      throw err;
    }
  }

  async get(key: BlobKey): Promise<StoredBlob | null> {
    let object: { ContentLength?: number; Body?: unknown };
    try {
      object = await this.#send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }),
        `GET ${describe(key)}`,
      );
    } catch (err) {
      if (isMissing((err as Error).cause)) return null;
      throw err;
    }
    return { size: object.ContentLength ?? 0, body: objectBody(object.Body, `GET ${describe(key)}`, this.#attemptMs) };
  }

  async put(key: BlobKey, whole: BlobBody, size: number): Promise<void> {
    const body = bodyStream(whole);
    const what = `PUT ${describe(key)}`;
    // S3 allows 10,000 parts, so very large blobs get larger parts.
    const partBytes = Math.max(this.#partBytes, Math.ceil(size / MAX_PARTS));
    if (size > partBytes) {
      return putMultipart({
        send: (command, label) => this.#send(command, label),
        bucket: this.#bucket,
        key: this.#key(key),
        body,
        partBytes,
        concurrency: this.#concurrency,
        what,
      });
    }
    // Small: read it all first, so nothing is sent unless the body ended cleanly.
    const bytes = await collect(body, size).catch((err: unknown) => Promise.reject(bodyError(err)));
    const objectKey = this.#key(key);
    const sending = key.kind === 'cas' ? this.#casPutsInFlight.get(objectKey) : undefined;
    if (
      sending !== undefined &&
      (await sending.then(
        () => true,
        () => false,
      ))
    )
      return;
    const sent = this.#send(
      new PutObjectCommand({ Bucket: this.#bucket, Key: objectKey, Body: bytes, ContentLength: bytes.byteLength }),
      what,
    );
    if (key.kind === 'cas' && !this.#casPutsInFlight.has(objectKey)) {
      this.#casPutsInFlight.set(objectKey, sent);
      const done = () => this.#casPutsInFlight.delete(objectKey);
      sent.then(done, done);
    }
    await sent;
  }

  /**
   * Every CAS blob under the prefix with its size and Last-Modified, a page (up to 1,000) at a time: what a bucket
   * index is rebuilt from. Keys that are not larder's blobs are skipped.
   */
  async *listCas(): AsyncIterable<Array<{ key: BlobKey; size: number; writtenAt: number }>> {
    let token: string | undefined;
    do {
      const page = await this.#send<{
        Contents?: Array<{ Key?: string; Size?: number; LastModified?: Date }>;
        NextContinuationToken?: string;
      }>(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#prefix, ContinuationToken: token }),
        `LIST ${this.#prefix}`,
      );
      yield (page.Contents ?? []).flatMap((object) => {
        const key = this.#blobKey(object.Key ?? '');
        if (key === null || key.kind !== 'cas') return [];
        return [{ key, size: object.Size ?? 0, writtenAt: object.LastModified?.getTime() ?? 0 }];
      });
      token = page.NextContinuationToken;
    } while (token !== undefined);
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  /** The BlobKey an object key names (the inverse of #key), or null for a key larder did not write. */
  #blobKey(objectKey: string): BlobKey | null {
    const match = /^(_default|i-.+)\/(ac|cas)\/([0-9a-f]{64})$/.exec(objectKey.slice(this.#prefix.length));
    if (!objectKey.startsWith(this.#prefix) || match === null) return null;
    const instance = match[1] === '_default' ? '' : match[1]!.slice('i-'.length);
    return { instance, kind: match[2] as BlobKind, hash: match[3]! };
  }

  #key(key: BlobKey): string {
    const instance = key.instance === '' ? '_default' : `i-${key.instance}`;
    return `${this.#prefix}${instance}/${key.kind}/${key.hash}`;
  }

  /**
   * One S3 call, abandoned after `timeoutMs` (retries included). The deadline covers the request up to the
   * response headers only: a GetObject body then streams for as long as it keeps moving (socketTimeout).
   * Failures come back as LarderErrors with the SDK error as `cause`.
   */
  async #send<T>(command: Command, what: string): Promise<T> {
    const deadline = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort();
    }, this.#timeoutMs);
    const operation = command.constructor.name.replace(/Command$/, '');
    try {
      // The SDK's per-command overloads do not survive a generic wrapper; the caller states the output type.
      const output = (await this.#client.send(command as never, { abortSignal: deadline.signal })) as T;
      this.#observer?.attempts(operation, attemptsOf(output));
      return output;
    } catch (err) {
      const error = s3Error(err, what, timedOut);
      this.#observer?.attempts(operation, attemptsOf(err));
      // A missing object is an answer (a miss), not a failure.
      if (!isMissing(err)) this.#observer?.failed(operation, error.code);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Node: node:http with connect and idle-socket timeouts and a keep-alive pool. Deno: its native fetch, whose
 * bodies stream with real backpressure (Deno's node:http layer buffered ~100 MiB more per 256 MiB blob in our
 * tests) and which Deno Deploy supports natively; an attempt there is bounded up to the response headers, and
 * a body that stalls is caught by objectBody's idle limit.
 */
function httpHandler(attemptMs: number) {
  if ('Deno' in globalThis) return new FetchHttpHandler({ requestTimeout: attemptMs, keepAlive: true });
  return new NodeHttpHandler({
    connectionTimeout: Math.min(attemptMs, 5_000),
    // Idle timeout: a stalled socket (while uploading, waiting or streaming a body out) fails the attempt.
    socketTimeout: attemptMs,
    httpAgent: { keepAlive: true, maxSockets: 64 },
    httpsAgent: { keepAlive: true, maxSockets: 64 },
  });
}

/** The SDK records how many attempts a request took in `$metadata`, on its output and on its errors alike. */
function attemptsOf(outputOrError: unknown): number {
  const attempts = (outputOrError as { $metadata?: { attempts?: number } } | null)?.$metadata?.attempts;
  return typeof attempts === 'number' && attempts > 0 ? attempts : 1;
}

function describe(key: BlobKey): string {
  return `${key.instance === '' ? '' : `${key.instance}/`}${key.kind}/${key.hash.slice(0, 12)}…`;
}
