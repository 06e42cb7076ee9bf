/**
 * Bytes read from a stream and not yet consumed, in one growable buffer: appending copies each chunk once, and
 * consuming only moves a start index, so a reader that takes whole messages off the front does work linear in the
 * bytes it receives (concatenating every chunk onto the rest instead is quadratic in a message's size).
 */
export class ByteQueue {
  private buffer: Uint8Array;
  private start = 0;
  private end = 0;

  /** `maxCapacity` caps doubling (never what one append needs), so a bounded reader never holds twice its bound. */
  constructor(private readonly maxCapacity: number) {
    this.buffer = new Uint8Array(Math.min(64 * 1024, maxCapacity));
  }

  get length(): number {
    return this.end - this.start;
  }

  /** The unconsumed bytes: a view, valid until the next append or reserve. */
  bytes(): Uint8Array {
    return this.buffer.subarray(this.start, this.end);
  }

  append(chunk: Uint8Array): void {
    this.reserve(this.length + chunk.length);
    // set() has a fixed cost that dwarfs copying a few bytes by hand (a worker may write a byte at a time).
    const length = chunk.length;
    if (length > 16) this.buffer.set(chunk, this.end);
    else for (let i = 0; i < length; i++) this.buffer[this.end + i] = chunk[i]!;
    this.end += length;
  }

  /** Drops the first `count` unconsumed bytes. */
  consume(count: number): void {
    this.start += count;
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** Makes room for `total` unconsumed bytes in all (a message whose size is announced is then never copied again). */
  reserve(total: number): void {
    if (this.start + total <= this.buffer.byteLength) return;
    if (total <= this.buffer.byteLength / 2) {
      // Plenty of room once the consumed front is reused: moving at most half the buffer, which has filled since.
      this.buffer.copyWithin(0, this.start, this.end);
    } else {
      const grown = new Uint8Array(Math.max(total, Math.min(this.buffer.byteLength * 2, this.maxCapacity)));
      grown.set(this.buffer.subarray(this.start, this.end));
      this.buffer = grown;
    }
    this.end -= this.start;
    this.start = 0;
  }
}
