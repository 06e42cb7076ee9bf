/**
 * A bounded in-memory store, least recently used evicted first. Use it alone for tests and throwaway
 * caches, or as the fast tier in front of disk or S3.
 */
import { type BlobKey, formatKey } from '../digest.ts';
import { LarderError } from '../errors.ts';
import type { BlobBody, BlobStore, StoredBlob } from './store.ts';
import { bodyError, bytesBlob, concat } from './streams.ts';

export interface MemoryStoreOptions {
  /** Total bytes kept; the least recently used blobs go first when a new one needs room. */
  maxBytes: number;
  /** Called with the number of blobs each insertion evicted (for metrics). */
  onEvicted?: (blobs: number) => void;
}

export class MemoryStore implements BlobStore {
  // A Map iterates in insertion order; re-inserting on every hit makes the first entry the LRU one.
  readonly #blobs = new Map<string, Uint8Array>();
  #bytes = 0;
  readonly #maxBytes: number;
  readonly #onEvicted: ((blobs: number) => void) | undefined;

  constructor(options: MemoryStoreOptions) {
    this.#maxBytes = options.maxBytes;
    this.#onEvicted = options.onEvicted;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  async get(key: BlobKey): Promise<StoredBlob | null> {
    const id = formatKey(key);
    const data = this.#blobs.get(id);
    if (data === undefined) return null;
    this.#blobs.delete(id);
    this.#blobs.set(id, data);
    return bytesBlob(data);
  }

  async stat(key: BlobKey): Promise<number | null> {
    return this.#blobs.get(formatKey(key))?.byteLength ?? null;
  }

  async put(key: BlobKey, body: BlobBody, size: number): Promise<void> {
    if (size > this.#maxBytes) {
      if (!(body instanceof Uint8Array)) await body.cancel();
      throw new LarderError('no_space', `memory: a ${size}-byte blob is larger than the ${this.#maxBytes}-byte budget`);
    }
    if (body instanceof Uint8Array) return this.#insert(formatKey(key), body);
    const chunks: Uint8Array[] = [];
    let length = 0;
    try {
      for await (const chunk of body) {
        chunks.push(chunk);
        length += chunk.byteLength;
      }
    } catch (err) {
      throw bodyError(err);
    }
    this.#insert(formatKey(key), concat(chunks, length));
  }

  #insert(id: string, data: Uint8Array): void {
    const previous = this.#blobs.get(id);
    if (previous !== undefined) {
      this.#bytes -= previous.byteLength;
      this.#blobs.delete(id);
    }
    let evicted = 0;
    for (const [oldest, blob] of this.#blobs) {
      if (this.#bytes + data.byteLength <= this.#maxBytes) break;
      this.#blobs.delete(oldest);
      this.#bytes -= blob.byteLength;
      evicted++;
    }
    if (evicted > 0) this.#onEvicted?.(evicted);
    this.#blobs.set(id, data);
    this.#bytes += data.byteLength;
  }
}
