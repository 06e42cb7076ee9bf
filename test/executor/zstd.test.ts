// zstd wrappers: round trips through streams of any chunking, and bounded output for hostile input.
import { describe, expect, it } from 'vitest';
import { loadZstd } from '../../executor/reapi/zstd.ts';
import { IN_CI } from '../helpers/tools.ts';
import { randomBytes } from './helpers.ts';
import { bytesOf } from '../helpers/bytes.ts';

const zstd = loadZstd();
if (zstd === null && IN_CI)
  throw new Error('CI=true and zstd-napi is not installed (npm ci builds it from source with node-gyp)');

async function through(
  data: Uint8Array,
  chunk: number,
  transform: ReadableWritablePair<Uint8Array, Uint8Array>,
): Promise<Buffer> {
  let offset = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= data.byteLength) return controller.close();
      controller.enqueue(data.subarray(offset, offset + chunk));
      offset += chunk;
    },
  });
  const out: Uint8Array[] = [];
  for await (const piece of source.pipeThrough(transform)) out.push(piece);
  return Buffer.concat(out);
}

describe.runIf(zstd !== null)('zstd', () => {
  const z = zstd!;
  const data = Buffer.concat([randomBytes(300_000, 5), Buffer.alloc(2_000_000, 1), randomBytes(100_000, 6)]);

  it.each([1000, 65_536, 3_000_000])('round-trips in %i-byte chunks', async (chunk) => {
    const compressed = await through(data, chunk, z.compressor());
    expect(compressed.byteLength).toBeLessThan(data.byteLength);
    const restored = await through(compressed, chunk, z.decompressor(data.byteLength));
    expect(bytesOf(restored)).toEqual(bytesOf(data));
    expect(bytesOf(z.decompress(compressed, data.byteLength))).toEqual(bytesOf(data));
  });

  it('decodes concatenated frames', async () => {
    const a = await through(Buffer.from('first '), 100, z.compressor());
    const b = await through(Buffer.from('second'), 100, z.compressor());
    expect(Buffer.from(z.decompress(Buffer.concat([a, b]), 12)).toString()).toBe('first second');
  });

  it('stops a small input that expands far past the declared size, without inflating it', async () => {
    const bomb = await through(Buffer.alloc(256 * 1024 * 1024), 64 * 1024 * 1024, z.compressor());
    expect(bomb.byteLength).toBeLessThan(100_000);
    const before = process.memoryUsage().rss;
    expect(() => z.decompress(bomb, 1024 * 1024)).toThrow(/expands past the declared/);
    await expect(through(bomb, 1000, z.decompressor(1024 * 1024))).rejects.toThrow(/expands past/);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses truncated and foreign data', async () => {
    const compressed = await through(data, 65_536, z.compressor());
    expect(() => z.decompress(compressed.subarray(0, compressed.byteLength - 5), data.byteLength)).toThrow(
      /middle of a frame/,
    );
    expect(() => z.decompress(Buffer.from('definitely not zstd'), 100)).toThrow(/not valid zstd/);
  });
});
