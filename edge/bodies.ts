/**
 * How a blob's bytes move between the socket and the store, in both directions.
 *
 * Uploads: how an accepted upload's bytes reach the store. The app (app.ts) decides what a request means (path, method,
 * authorisation, declared size) and only then asks a BodyReceiver for the bytes; a runtime entry may supply a
 * cheaper receiver than the default (edge/node-body.ts reads straight from the socket), never one that decides
 * anything else.
 *
 * Bodies up to WHOLE_BODY_MAX are read whole into memory and handed to the store as bytes (store.ts BlobBody):
 * one hash call and one write instead of a stream of chunks, each with its promises. Memory stays bounded: at
 * most WHOLE_BODY_BUDGET bytes of such bodies are held at once; past that, bodies stream.
 */
import { bodyError, collect, streamOf } from '../shared/storage/streams.ts';
import type { BlobBody, BlobFile, StoredBlob } from '../shared/storage/store.ts';

/**
 * Hands `use` the body of an upload of `size` bytes (declared by Content-Length, already checked against limits).
 * `env` is what the runtime's adapter passed with the request (@hono/node-server: the Node request and response).
 */
export type BodyReceiver = (
  request: Request,
  env: unknown,
  size: number,
  use: (body: BlobBody) => Promise<void>,
) => Promise<void>;

/**
 * Downloads: turns a blob the app found (and decided to serve, with these headers) into the Response that sends
 * it. The default sends bytes in hand as they are and streams the rest; a runtime may do better.
 */
export type BlobSender = (
  env: unknown,
  blob: StoredBlob,
  headers: Record<string, string>,
) => Response | Promise<Response>;

/**
 * Downloads, for a runtime that sends files itself: a blob the store located in a file (BlobStore.locate) without
 * opening it, typed `application/octet-stream` and sized by the runtime as it sends it (no header object to build
 * per download). The file may be gone by the time it is opened; the sender answers that as a miss.
 */
export type FileSender = (file: BlobFile) => Response;

export function webSender(_env: unknown, blob: StoredBlob, headers: Record<string, string>): Response {
  // The casts only narrow the buffer type: Uint8Array<ArrayBufferLike> is what the stores hand out.
  return new Response(blob.bytes !== undefined ? (blob.bytes as Uint8Array<ArrayBuffer>) : blob.body, { headers });
}

export const WHOLE_BODY_MAX = 2 * 1024 * 1024;
export const WHOLE_BODY_BUDGET = 64 * 1024 * 1024;

/** The bytes of whole bodies being held right now, against WHOLE_BODY_BUDGET (one count per process). */
export class WholeBodies {
  #held = 0;
  constructor(
    readonly max = WHOLE_BODY_MAX,
    readonly budget = WHOLE_BODY_BUDGET,
  ) {}

  /** Runs `read` then `use` on a whole body if one of `size` bytes fits now; false (nothing run) when it must stream. */
  async hold(size: number, read: () => Promise<Uint8Array>, use: (body: BlobBody) => Promise<void>): Promise<boolean> {
    if (!this.take(size)) return false;
    try {
      await use(await read());
    } finally {
      this.give(size);
    }
    return true;
  }

  /** Counts `size` bytes as held if they fit; the caller gives them back when it lets go of them. */
  take(size: number): boolean {
    if (size > this.max || this.#held + size > this.budget) return false;
    this.#held += size;
    return true;
  }

  give(size: number): void {
    this.#held -= size;
  }

  get held(): number {
    return this.#held;
  }
}

/**
 * The web-standard receiver, for every runtime: small bodies gathered from the Request's stream into one buffer,
 * larger ones passed on as the stream. (`Request.arrayBuffer()` would be shorter, but on Deno a process that had
 * used it then held ~200 MiB more while streaming a 256 MiB blob: test/edge/http-protocol.ts checks that.)
 */
export function webBodies(whole = new WholeBodies()): BodyReceiver {
  return async function webBodies(request, _env, size, use) {
    const read = () =>
      collect(request.body ?? streamOf(new Uint8Array(0)), size).catch((err: unknown) =>
        Promise.reject(bodyError(err)),
      );
    if (await whole.hold(size, read, use)) return;
    await use(request.body ?? streamOf(new Uint8Array(0)));
  };
}
