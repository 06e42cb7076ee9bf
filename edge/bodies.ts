/**
 * How an accepted upload's bytes reach the store. The app (app.ts) decides what a request means (path, method,
 * authorisation, declared size) and only then asks a BodyReceiver for the bytes; a runtime entry may supply a
 * cheaper receiver than the default (edge/node-body.ts reads straight from the socket), never one that decides
 * anything else.
 *
 * Bodies up to WHOLE_BODY_MAX are read whole into memory and handed to the store as bytes (store.ts BlobBody):
 * one hash call and one write instead of a stream of chunks, each with its promises. Memory stays bounded: at
 * most WHOLE_BODY_BUDGET bytes of such bodies are held at once; past that, bodies stream.
 */
import type { Context } from 'hono';
import { bodyError, streamOf } from '../shared/storage/streams.ts';
import type { BlobBody } from '../shared/storage/store.ts';
import type { EdgeEnv } from './auth.ts';

/** Hands `use` the body of an upload of `size` bytes (declared by Content-Length, already checked against limits). */
export type BodyReceiver = (c: Context<EdgeEnv>, size: number, use: (body: BlobBody) => Promise<void>) => Promise<void>;

export const WHOLE_BODY_MAX = 2 * 1024 * 1024;
export const WHOLE_BODY_BUDGET = 64 * 1024 * 1024;

/** The bytes of whole bodies being held right now, against WHOLE_BODY_BUDGET (one count per process). */
export class WholeBodies {
  #held = 0;
  constructor(readonly max = WHOLE_BODY_MAX, readonly budget = WHOLE_BODY_BUDGET) {}

  /** Runs `read` then `use` on a whole body if one of `size` bytes fits now; false (nothing run) when it must stream. */
  async hold(size: number, read: () => Promise<Uint8Array>, use: (body: BlobBody) => Promise<void>): Promise<boolean> {
    if (size > this.max || this.#held + size > this.budget) return false;
    this.#held += size;
    try {
      await use(await read());
    } finally {
      this.#held -= size;
    }
    return true;
  }

  get held(): number {
    return this.#held;
  }
}

/**
 * The web-standard receiver, for every runtime: small bodies through `Request.arrayBuffer()` (native on Deno, and
 * read directly from the socket by @hono/node-server), larger ones as the Request's stream.
 */
export function webBodies(whole = new WholeBodies()): BodyReceiver {
  return async function webBodies(c, size, use) {
    const request = c.req.raw;
    const read = () => request.arrayBuffer().then((buffer) => new Uint8Array(buffer), (err: unknown) => Promise.reject(bodyError(err)));
    if (await whole.hold(size, read, use)) return;
    await use(request.body ?? streamOf(new Uint8Array(0)));
  };
}
