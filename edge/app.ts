/**
 * The edge: Bazel's HTTP remote-cache protocol as a web-standard Request → Response app.
 * Runtime entry files (node.ts, deno.ts) only serve it.
 *
 *   GET  /[instance/]{ac|cas}/{hash}   200 with the blob, 404 on a miss
 *   HEAD /[instance/]{ac|cas}/{hash}   200 with Content-Length, 404 on a miss; never reads a CAS blob (an AC
 *                                      entry is read and validated, so HEAD and GET agree)
 *   PUT  /[instance/]{ac|cas}/{hash}   stores the body once its length (and, for cas, SHA-256) checks out
 */
import { Hono, type Context } from 'hono';
import type { AccessGate } from '../shared/auth/gate.ts';
import { decodeActionResult, MAX_BUFFERED_PROTO_BYTES, outputsPresent } from '../shared/ac/validate.ts';
import { type BlobKey, EMPTY_SHA256, formatKey } from '../shared/digest.ts';
import { errorForLog, LarderError, isLarderError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import type { Metrics } from '../shared/metrics/metrics.ts';
import { renderStatusPage, type StatusSnapshot } from '../shared/status/page.ts';
import { REQUEST_METADATA_KEY, requestMetadataFields, requestMetadataFromHeader } from '../shared/request-metadata.ts';
import type { BlobStore } from '../shared/storage/store.ts';
import { collect, readWhole } from '../shared/storage/streams.ts';
import { edgeAuth, type EdgeEnv } from './auth.ts';
import { type BlobSender, type BodyReceiver, type FileSender, webBodies, webSender } from './bodies.ts';
import { parseBlobPath } from './blob-path.ts';
import { HTTP_STATUS } from './errors.ts';
import { observeRequests } from './observe.ts';

export interface EdgeAppOptions {
  store: BlobStore;
  log: Logger;
  /** Largest blob accepted; a bigger upload is refused with 413 before its body is read. */
  maxBlobBytes: number;
  /** Answer AC reads whose outputs are gone from the CAS as misses. */
  validateActionResults: boolean;
  /** Who may read and write; absent, every request is allowed (embedding and tests only: buildEdge always sets it). */
  gate?: AccessGate;
  /** Counts requests, bytes and refusals, and serves them at `GET /metrics` (read role, like the cache). */
  metrics?: Metrics;
  /** What `GET /status` shows (read role, like the cache); no status page without it. */
  status?: () => StatusSnapshot | Promise<StatusSnapshot>;
  /**
   * Where an accepted upload's bytes come from (bodies.ts); the web-standard receiver by default. Called only once
   * the request has been parsed, authorised and size-checked: a runtime's receiver moves bytes, it decides nothing.
   */
  bodies?: BodyReceiver;
  /** How a found blob is sent (bodies.ts): bytes as they are, streams streamed, by default; the app chose the headers. */
  sender?: BlobSender;
  /** How a blob the store located in a file is sent (Bun's sendfile); without it, every download asks `get`. */
  fileSender?: FileSender;
}

const BLOB_HEADERS = { 'content-type': 'application/octet-stream' };

export function createEdgeApp(options: EdgeAppOptions): Hono<EdgeEnv> {
  const { store, log } = options;
  const bodies = options.bodies ?? webBodies();
  const send = options.sender ?? webSender;
  const sendFile = options.fileSender;
  const app = new Hono<EdgeEnv>();

  const { metrics } = options;
  app.get('/healthz', (c) => c.text('ok\n'));
  app.use('*', observeRequests(log, metrics));
  // Everything after the health check is authenticated and authorised first (401/403 before any body is read).
  if (options.gate !== undefined) app.use('*', edgeAuth(options.gate, log, metrics));
  if (metrics !== undefined) {
    app.get('/metrics', async (c) => c.body(await metrics.exposition(), 200, { 'content-type': metrics.contentType }));
  }
  const { status } = options;
  if (status !== undefined) app.get('/status', async (c) => c.html(renderStatusPage(await status())));

  app.all('*', async (c) => {
    // c.get, not c.var: Hono builds c.var afresh from all the variables on every read.
    const key = (c.get('blob') as BlobKey | undefined) ?? parseBlobPath(new URL(c.req.url).pathname);
    if (key === null)
      return c.text('not found: cache paths are /[instance/]ac/{sha256} and /[instance/]cas/{sha256}\n', 404);
    switch (c.req.method) {
      case 'GET':
        return key.kind === 'ac' ? getActionResult(c, key) : getBlob(c, key);
      case 'HEAD':
        return headBlob(key);
      case 'PUT':
        return putBlob(c, key);
      default:
        return c.text(`method ${c.req.method} not allowed\n`, 405, { allow: 'GET, HEAD, PUT' });
    }
  });

  app.onError((err, c) => {
    const code = isLarderError(err) ? err.code : 'internal';
    const status = HTTP_STATUS[code];
    const metadata = requestMetadataFields(requestMetadataFromHeader(c.req.header(REQUEST_METADATA_KEY)));
    const fields = { method: c.req.method, path: new URL(c.req.url).pathname, status, ...metadata };
    if (status >= 500) log.error(errorForLog(err), fields);
    else log.debug(err.message, fields);
    const message = isLarderError(err) ? err.message : 'internal error';
    return c.text(`${message}\n`, status as 400);
  });

  async function getBlob(c: Context<EdgeEnv>, key: BlobKey): Promise<Response> {
    if (sendFile !== undefined && store.locate !== undefined) {
      const file = await store.locate(key);
      if (file !== null) return sendFile(c, file, { ...BLOB_HEADERS, 'content-length': String(file.size) });
    }
    const blob = await store.get(key);
    if (blob === null) {
      if (key.kind === 'cas' && key.hash === EMPTY_SHA256) return blobResponse(new Uint8Array(0));
      return miss(key);
    }
    return send(c, blob, { ...BLOB_HEADERS, 'content-length': String(blob.size) });
  }

  async function getActionResult(c: Context<EdgeEnv>, key: BlobKey): Promise<Response> {
    const bytes = await usableActionResult(key);
    if (bytes === null)
      return c.text('not found: no action result, or one that refers to outputs no longer stored\n', 404);
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

  async function putBlob(c: Context<EdgeEnv>, key: BlobKey): Promise<Response> {
    const size = declaredLength(c.req.header('content-length'));
    if (size > options.maxBlobBytes) {
      throw new LarderError('too_large', `blob of ${size} bytes exceeds the ${options.maxBlobBytes}-byte limit`);
    }
    if (key.kind === 'ac' && size > MAX_BUFFERED_PROTO_BYTES) {
      throw new LarderError(
        'too_large',
        `action result of ${size} bytes exceeds the ${MAX_BUFFERED_PROTO_BYTES}-byte limit`,
      );
    }
    await bodies(c, size, async (body) => {
      if (key.kind === 'cas') return store.put(key, body, size);
      // Buffered (bounded above) so the entry can be checked to be an ActionResult before it is stored.
      const bytes = body instanceof Uint8Array ? body : await collect(body, size + 1);
      decodeActionResult(bytes);
      await store.put(key, bytes, size);
    });
    log.debug('stored', { key: formatKey(key), size, by: c.get('principal')?.subject });
    return new Response(null, { status: 200 });
  }

  return app;
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

function declaredLength(header: string | undefined): number {
  if (header === undefined) throw new LarderError('length_required', 'PUT needs a Content-Length header');
  const size = Number(header);
  if (!/^\d+$/.test(header) || !Number.isSafeInteger(size)) {
    throw new LarderError('invalid_argument', `invalid Content-Length: ${JSON.stringify(header)}`);
  }
  return size;
}
