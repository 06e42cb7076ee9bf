/**
 * The engine's multiplexed stdio stream (Tty off): each frame is an 8-byte header — stream id (0 stdin, 1 stdout,
 * 2 stderr), three zero bytes, a big-endian uint32 length — then that many bytes. Frames arrive split and joined
 * arbitrarily across socket chunks, so the demuxer buffers only a partial header or payload.
 */
export type StreamId = 1 | 2;

export class FrameDemuxer {
  private pending = Buffer.alloc(0);

  constructor(private readonly onFrame: (stream: StreamId, data: Buffer) => void) {}

  push(chunk: Buffer): void {
    let data = this.pending.byteLength === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (data.byteLength >= 8) {
      const length = data.readUInt32BE(4);
      if (data.byteLength < 8 + length) break;
      const stream = data[0] === 2 ? 2 : 1; // 0 (stdin echo) never comes without a Tty; treat as stdout
      if (length > 0) this.onFrame(stream, data.subarray(8, 8 + length));
      data = data.subarray(8 + length);
    }
    // Copy the rest so the socket's chunk can be freed.
    this.pending = Buffer.from(data);
  }
}
