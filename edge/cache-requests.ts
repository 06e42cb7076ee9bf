/**
 * Serves the cache's own requests, `GET|HEAD|PUT /[instance/]{ac|cas}/{hash}`: observed (log line, metrics),
 * authorised, then answered. They are plain function calls, not Hono middleware and routes: cache requests are
 * most of what the edge serves, and each layer costs them. On Bun a 1 MiB download (sendfile) cost 40–90 µs more
 * server CPU through Hono's router, context and two middleware than through these steps called directly (side by
 * side, one core each, a busy machine); in a loop the same layers cost only ~15 µs: the sendfile leaves the caches
 * cold for the next request's code. app.ts sends cache paths here before its router sees them.
 */
import type { Principal } from '../shared/auth/authenticator.ts';
import { ROLES } from '../shared/auth/operations.ts';
import type { AccessGate } from '../shared/auth/gate.ts';
import { decodeActionResult, MAX_BUFFERED_PROTO_BYTES, outputsPresent } from '../shared/ac/validate.ts';
import { type BlobKey, EMPTY_SHA256, formatKey } from '../shared/digest.ts';
import { errorForLog, isLarderError, LarderError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import type { Metrics, Outcome } from '../shared/metrics/metrics.ts';
import { REQUEST_METADATA_KEY, requestMetadataFields, requestMetadataFromHeader } from '../shared/request-metadata.ts';
import type { BlobFile, BlobStore } from '../shared/storage/store.ts';
import { collect, readWhole } from '../shared/storage/streams.ts';
import { authorize } from './auth.ts';
import type { BlobSender, BodyReceiver, FileSender } from './bodies.ts';
import { HTTP_STATUS } from './errors.ts';

export interface CacheRequestOptions {
  store: BlobStore;
  log: Logger;
  /** Largest blob accepted; a bigger upload is refused with 413 before its body is read. */
  maxBlobBytes: number;
  /** Answer AC reads whose outputs are gone from the CAS as misses. */
  validateActionResults: boolean;
  /** Who may read and write; absent, every request is allowed (embedding and tests only: buildEdge always sets it). */
  gate?: AccessGate;
  /** Counts requests, bytes and refusals (served at `GET /metrics` by app.ts). */
  metrics?: Metrics;
  /**
   * Where an accepted upload's bytes come from (bodies.ts). Called only once the request has been parsed,
   * authorised and size-checked: a runtime's receiver moves bytes, it decides nothing.
   */
  bodies: BodyReceiver;
  /** How a found blob is sent (bodies.ts); the app chose the headers. */
  sender: BlobSender;
  /** How a blob the store located in a file is sent (Bun's sendfile); without it, every download asks `get`. */
  fileSender?: FileSender;
}

/** Answers one cache request for `key` (parsed from `path`); `env` is what the runtime's adapter passed with it. */
export type CacheRequestHandler = (
  request: Request,
  env: unknown,
  path: string,
  key: BlobKey,
) => Response | Promise<Response>;

const BLOB_HEADERS = { 'content-type': 'application/octet-stream' };

/** Who every request is when the app has no gate (embedding and tests): allowed everything. */
const UNGATED: Principal = { subject: 'anonymous', via: 'anonymous', roles: new Set(ROLES) };

export function cacheRequests(options: CacheRequestOptions): CacheRequestHandler {
  const { store, log, metrics, gate, bodies, fileSender } = options;
  const send = options.sender;

  return function cacheRequest(request, env, path, key) {
    const started = performance.now();
    // Authenticated and authorised first: 401/403 before any body is read.
    const admitted = admittedWithoutCredentials(request);
    if (admitted !== null) return answerAs(admitted, request, env, path, key, started);
    return authorize(gate!, log, metrics, request, path).then(
      (outcome) =>
        outcome instanceof Response
          ? observed(request, path, key, started, outcome)
          : answerAs(outcome, request, env, path, key, started),
      (err: unknown) => observed(request, path, key, started, failed(err, request, path)),
    );
  };

  /**
   * The answer to an admitted request. The commonest, a download of a blob the store has in a file, is answered
   * without a promise: on Bun that spares the async machinery around the sendfile.
   */
  function answerAs(
    principal: Principal,
    request: Request,
    env: unknown,
    path: string,
    key: BlobKey,
    started: number,
  ): Response | Promise<Response> {
    const file = request.method === 'GET' ? located(key) : null;
    if (file !== null) return observed(request, path, key, started, fileSender!(file), file.size);
    return answered(principal, request, env, path, key).then((response) =>
      observed(request, path, key, started, response),
    );
  }

  /**
   * Logs and counts an answered request, then hands its response on. `sentBytes` is a download's size when the
   * response does not carry it yet (a file Bun sizes as it sends it); otherwise its Content-Length says.
   */
  function observed(
    request: Request,
    path: string,
    key: BlobKey,
    started: number,
    response: Response,
    sentBytes?: number,
  ): Response {
    const { method } = request;
    const { status } = response;
    if (log.debugging !== false) {
      log.debug('request', {
        method,
        path,
        status,
        ms: Math.round((performance.now() - started) * 10) / 10,
        ...requestMetadataFields(requestMetadataFromHeader(request.headers.get(REQUEST_METADATA_KEY))),
      });
    }
    if (metrics === undefined) return response;
    metrics.request('http', method, key.kind, outcomeOf(method, status));
    if (status !== 200) return response;
    if (method === 'PUT') metrics.bytes('http', 'in', Number(request.headers.get('content-length') ?? 0));
    else if (method === 'GET')
      metrics.bytes('http', 'out', sentBytes ?? Number(response.headers.get('content-length') ?? 0));
    return response;
  }

  /**
   * Who a request without credentials is, when anonymous may do what it asks (or there is no gate); null when it
   * must be authorised (`authorize`), which also says why it is refused.
   */
  function admittedWithoutCredentials(request: Request): Principal | null {
    if (gate === undefined) return UNGATED;
    return request.headers.has('authorization') ? null : gate.anonymous(request.method);
  }

  /**
   * The file of a CAS blob the store locates from memory, when the runtime sends files itself. A store that fails
   * to say is asked again by `get`, whose error is then the answer.
   */
  function located(key: BlobKey): BlobFile | null {
    if (fileSender === undefined || store.locate === undefined || key.kind !== 'cas') return null;
    try {
      return store.locate(key);
    } catch {
      return null;
    }
  }

  /** The request's answer: what it asked for, or what went wrong, as a response. */
  async function answered(
    principal: Principal,
    request: Request,
    env: unknown,
    path: string,
    key: BlobKey,
  ): Promise<Response> {
    try {
      switch (request.method) {
        case 'GET':
          return key.kind === 'ac' ? await getActionResult(key) : await getBlob(env, key);
        case 'HEAD':
          return await headBlob(key);
        case 'PUT':
          return await putBlob(request, env, key, principal);
        default:
          return textResponse(`method ${request.method} not allowed\n`, 405, { allow: 'GET, HEAD, PUT' });
      }
    } catch (err) {
      return failed(err, request, path);
    }
  }

  function failed(err: unknown, request: Request, path: string): Response {
    return errorResponse(err, log, request.method, path, request.headers.get(REQUEST_METADATA_KEY));
  }

  /** A download `answerAs` could not locate in a file: the store reads it, or says it is missing. */
  async function getBlob(env: unknown, key: BlobKey): Promise<Response> {
    const blob = await store.get(key);
    if (blob === null) {
      if (key.kind === 'cas' && key.hash === EMPTY_SHA256) return blobResponse(new Uint8Array(0));
      return miss(key);
    }
    return send(env, blob, { ...BLOB_HEADERS, 'content-length': String(blob.size) });
  }

  async function getActionResult(key: BlobKey): Promise<Response> {
    const bytes = await usableActionResult(key);
    if (bytes === null)
      return textResponse('not found: no action result, or one that refers to outputs no longer stored\n', 404);
    return blobResponse(bytes);
  }

  /** The entry's bytes, or null on a miss or (with validation on) when its outputs are gone: GET and HEAD agree. */
  async function usableActionResult(key: BlobKey): Promise<Uint8Array | null> {
    const blob = await store.get(key);
    if (blob === null) return null;
    const bytes = await readWhole(blob, MAX_BUFFERED_PROTO_BYTES);
    if (!options.validateActionResults) return bytes;
    let present = false;
    try {
      present = await outputsPresent(store, key.instance, decodeActionResult(bytes));
    } catch (err) {
      if (!isLarderError(err, 'invalid_argument')) throw err;
    }
    if (present) return bytes;
    log.debug('action result refers to missing outputs; answering as a miss', { key: formatKey(key) });
    return null;
  }

  async function headBlob(key: BlobKey): Promise<Response> {
    if (key.kind === 'ac' && options.validateActionResults) {
      // Same answer as GET, at the cost of reading the (small) entry: a HEAD hit must be fetchable.
      const bytes = await usableActionResult(key);
      if (bytes === null) return new Response(null, { status: 404 });
      return new Response(null, { headers: { ...BLOB_HEADERS, 'content-length': String(bytes.byteLength) } });
    }
    let size = await store.stat(key);
    if (size === null && key.kind === 'cas' && key.hash === EMPTY_SHA256) size = 0;
    if (size === null) return new Response(null, { status: 404 });
    return new Response(null, { headers: { ...BLOB_HEADERS, 'content-length': String(size) } });
  }

  async function putBlob(request: Request, env: unknown, key: BlobKey, by: Principal): Promise<Response> {
    const size = declaredLength(request.headers.get('content-length'));
    if (size > options.maxBlobBytes) {
      throw new LarderError('too_large', `blob of ${size} bytes exceeds the ${options.maxBlobBytes}-byte limit`);
    }
    if (key.kind === 'ac' && size > MAX_BUFFERED_PROTO_BYTES) {
      throw new LarderError(
        'too_large',
        `action result of ${size} bytes exceeds the ${MAX_BUFFERED_PROTO_BYTES}-byte limit`,
      );
    }
    await bodies(request, env, size, async (body) => {
      if (key.kind === 'cas') return store.put(key, body, size);
      // Buffered (bounded above) so the entry can be checked to be an ActionResult before it is stored.
      const bytes = body instanceof Uint8Array ? body : await collect(body, size + 1);
      decodeActionResult(bytes);
      await store.put(key, bytes, size);
    });
    log.debug('stored', { key: formatKey(key), size, by: by.subject });
    return new Response(null, { status: 200 });
  }
}

/** 200 is a hit (GET, HEAD) or stored (PUT); 404 a miss; other 4xx the client's fault; 5xx the server's. */
export function outcomeOf(method: string, status: number): Outcome {
  if (status >= 200 && status < 300) return method === 'PUT' ? 'stored' : 'hit';
  if (status === 404) return 'miss';
  if (status >= 500) return 'error';
  return 'refused';
}

/**
 * What a request that failed is answered: a LarderError's code picks the status and its message is the body; any
 * other error is a 500 whose cause is logged, never sent. app.ts answers its own routes' errors with this too.
 */
export function errorResponse(
  err: unknown,
  log: Logger,
  method: string,
  path: string,
  metadataHeader: string | null,
): Response {
  const code = isLarderError(err) ? err.code : 'internal';
  const status = HTTP_STATUS[code];
  const fields = { method, path, status, ...requestMetadataFields(requestMetadataFromHeader(metadataHeader)) };
  if (status >= 500) log.error(errorForLog(err), fields);
  else log.debug((err as Error).message, fields);
  return textResponse(`${isLarderError(err) ? err.message : 'internal error'}\n`, status);
}

function textResponse(text: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(text, { status, headers: { 'content-type': 'text/plain; charset=UTF-8', ...headers } });
}

function miss(key: BlobKey): Response {
  return new Response(`not found: ${key.kind}/${key.hash}\n`, { status: 404 });
}

/** A response with the whole body in hand: the Node adapter writes headers and body in one go, unlike a stream. */
function blobResponse(bytes: Uint8Array): Response {
  // The cast only narrows the buffer type: Uint8Array<ArrayBufferLike> is what the stores hand out.
  return new Response(bytes as Uint8Array<ArrayBuffer>, {
    headers: { ...BLOB_HEADERS, 'content-length': String(bytes.byteLength) },
  });
}

function declaredLength(header: string | null): number {
  if (header === null) throw new LarderError('length_required', 'PUT needs a Content-Length header');
  const size = Number(header);
  if (!/^\d+$/.test(header) || !Number.isSafeInteger(size)) {
    throw new LarderError('invalid_argument', `invalid Content-Length: ${JSON.stringify(header)}`);
  }
  return size;
}
