/**
 * Blob material for the benchmark, all content-addressed with real SHA-256 names so that larder's
 * verified CAS uploads accept it:
 *
 * - `blobSet`: a fixed set of random blobs (pre-populated, then read back or re-uploaded).
 * - `FreshBlobs`: an endless supply of distinct blobs of one size without holding them all in memory.
 *   Every blob is one shared random prefix followed by an 8-byte counter; the SHA-256 state after the
 *   prefix is computed once and copied per blob, so naming a new 1 MiB blob costs one 8-byte hash update
 *   rather than hashing a megabyte in the load generator.
 * - `streamedBlob`: a large blob (1 GiB) produced chunk by chunk, hashed in a first pass, never held whole.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';

export interface Blob {
  hash: string;
  body: Buffer;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function blobSet(size: number, count: number): Blob[] {
  const blobs: Blob[] = [];
  for (let i = 0; i < count; i++) {
    const body = randomBytes(size);
    blobs.push({ hash: sha256(body), body });
  }
  return blobs;
}

export class FreshBlobs {
  readonly size: number;
  /** Random bytes with the last 8 overwritten by the counter of the blob being handed out. */
  readonly #template: Buffer;
  readonly #prefixState: Hash;
  #next = 0n;

  constructor(size: number) {
    if (size < 8) throw new Error('fresh blobs need at least 8 bytes for their counter');
    this.size = size;
    this.#template = randomBytes(size);
    this.#prefixState = createHash('sha256').update(this.#template.subarray(0, size - 8));
  }

  /**
   * The next distinct blob. Its body is the shared template buffer, valid only until the next call:
   * callers copy it (autocannon's request builder does) before asking for another.
   */
  next(): Blob {
    const counter = this.#template.subarray(this.size - 8);
    counter.writeBigUInt64BE(this.#next++);
    const hash = this.#prefixState.copy().update(counter).digest('hex');
    return { hash, body: this.#template };
  }

  get issued(): number {
    return Number(this.#next);
  }
}

/** A big blob described by a seed chunk: chunk i is the seed with i written into its first 8 bytes. */
export class StreamedBlob {
  readonly size: number;
  readonly #seed: Buffer;
  #hash: string | null = null;

  constructor(size: number, chunkSize = 1 << 20) {
    this.size = size;
    this.#seed = randomBytes(Math.min(chunkSize, size));
  }

  /** Chunks of the blob, each a fresh buffer (the consumer may hold on to it while the socket drains). */
  *chunks(): Generator<Buffer> {
    let offset = 0;
    for (let i = 0n; offset < this.size; i++) {
      const length = Math.min(this.#seed.length, this.size - offset);
      const chunk = Buffer.allocUnsafe(length);
      this.#seed.copy(chunk, 0, 0, length);
      if (length >= 8) chunk.writeBigUInt64BE(i, 0);
      offset += length;
      yield chunk;
    }
  }

  /** Whether `data` equals the blob's bytes starting at `offset` (no copies: compared against the seed in place). */
  matches(offset: number, data: Uint8Array): boolean {
    const seedLength = this.#seed.length;
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      if (at >= this.size) return false;
      const chunk = Math.floor(at / seedLength);
      const within = at % seedLength;
      const n = Math.min(seedLength - within, data.length - done, this.size - at);
      let i = 0;
      // The chunk's first 8 bytes are its index, big-endian.
      for (; within + i < 8 && i < n; i++) {
        const expected = Number((BigInt(chunk) >> BigInt(8 * (7 - (within + i)))) & 0xffn);
        if (data[done + i] !== expected) return false;
      }
      if (i < n && Buffer.compare(data.subarray(done + i, done + n), this.#seed.subarray(within + i, within + n)) !== 0)
        return false;
      done += n;
    }
    return true;
  }

  /** SHA-256 of the whole blob, computed once by streaming through it. */
  get hash(): string {
    if (this.#hash === null) {
      const h = createHash('sha256');
      for (const chunk of this.chunks()) h.update(chunk);
      this.#hash = h.digest('hex');
    }
    return this.#hash;
  }
}
