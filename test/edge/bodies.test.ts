// The body receivers and the sender behind edge/app.ts, through the app itself (app.request(): the web-standard
// receiver, as on Deno) and directly (the budget that bounds whole bodies held in memory).
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEdgeApp } from '../../edge/app.ts';
import { WHOLE_BODY_MAX, WholeBodies } from '../../edge/bodies.ts';
import { createLogger } from '../../shared/log.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import { verifying } from '../../shared/storage/verifying.ts';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

function app() {
  return createEdgeApp({
    store: verifying(new MemoryStore({ maxBytes: 64 << 20 })),
    log: createLogger('silent'),
    maxBlobBytes: 64 << 20,
    validateActionResults: true,
  });
}

describe('edge app, web-standard body receiver', () => {
  for (const [path, size] of [
    ['read whole', 3000],
    ['streamed', WHOLE_BODY_MAX + 1],
  ] as const) {
    it(`stores and serves a blob ${path}, refuses wrong bytes and a short body, and stores nothing from them`, async () => {
      const edge = app();
      const data = randomBytes(size);
      const put = (body: Uint8Array, length = body.byteLength) =>
        edge.request(`/cas/${sha256(data)}`, {
          method: 'PUT',
          body: body as Uint8Array<ArrayBuffer>,
          headers: { 'content-length': String(length) },
        });
      const wrong = await put(randomBytes(size));
      expect([wrong.status, await wrong.text()]).toEqual([400, expect.stringMatching(/sha256 mismatch/)]);
      const short = await put(data.subarray(0, size - 1), size);
      expect([short.status, await short.text()]).toEqual([400, expect.stringMatching(/size mismatch/)]);
      expect((await edge.request(`/cas/${sha256(data)}`, { method: 'HEAD' })).status).toBe(404);
      expect((await put(data)).status).toBe(200);
      expect((await put(data)).status).toBe(200);
      const got = await edge.request(`/cas/${sha256(data)}`);
      expect([got.status, got.headers.get('content-length'), sha256(new Uint8Array(await got.arrayBuffer()))]).toEqual([
        200,
        String(size),
        sha256(data),
      ]);
    });
  }
});

describe('WholeBodies', () => {
  it('holds bodies up to its maximum while their bytes fit the budget, and gives them back', async () => {
    const whole = new WholeBodies(100, 150);
    expect(whole.take(101)).toBe(false);
    expect(whole.take(100)).toBe(true);
    expect(whole.take(60)).toBe(false); // 160 > 150: this one must stream
    expect(whole.take(50)).toBe(true);
    whole.give(100);
    whole.give(50);
    expect(whole.held).toBe(0);
    let used: unknown = null;
    expect(
      await whole.hold(
        10,
        async () => new Uint8Array(10),
        async (body) => {
          used = body;
        },
      ),
    ).toBe(true);
    expect((used as Uint8Array).byteLength).toBe(10);
    await expect(
      whole.hold(
        10,
        async () => Promise.reject(new Error('client went away')),
        async () => {},
      ),
    ).rejects.toThrow('client went away');
    expect(whole.held).toBe(0);
  });
});
