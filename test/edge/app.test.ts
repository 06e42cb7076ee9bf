// How edge/app.ts sends a request on: cache paths to cache-requests.ts (parsed from the URL by hand, not by Hono's
// router), everything else to its routes. Through the app itself, without a server.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEdgeApp } from '../../edge/app.ts';
import { createLogger } from '../../shared/log.ts';
import { Metrics } from '../../shared/metrics/metrics.ts';
import { MemoryStore } from '../../shared/storage/memory.ts';
import { verifying } from '../../shared/storage/verifying.ts';

const data = new TextEncoder().encode('the blob');
const hash = createHash('sha256').update(data).digest('hex');

function app() {
  const metrics = new Metrics();
  const edge = createEdgeApp({
    store: verifying(new MemoryStore({ maxBytes: 1 << 20 })),
    log: createLogger('silent'),
    maxBlobBytes: 1 << 20,
    validateActionResults: true,
    metrics,
  });
  const put = (path: string) =>
    edge.request(path, { method: 'PUT', body: data, headers: { 'content-length': String(data.byteLength) } });
  return { edge, metrics, put };
}

describe('edge app routing', () => {
  it('reads the cache path without its query string, and with an instance prefix', async () => {
    const { edge, put } = app();
    expect((await put(`/team-a/cas/${hash}?upload=1`)).status).toBe(200);
    const got = await edge.request(`/team-a/cas/${hash}?x=1&y=2`);
    expect([got.status, await got.text()]).toEqual([200, 'the blob']);
    expect((await edge.request(`/cas/${hash}`)).status).toBe(404); // another instance
    expect((await edge.request(`/team%2Da/cas/${hash}`)).status).toBe(200); // the same instance, percent-encoded
  });

  it('answers a bad instance prefix, a method it does not serve and a missing length with their statuses', async () => {
    const { edge } = app();
    const bad = await edge.request(`/%E0%A4%A/cas/${hash}`);
    expect([bad.status, await bad.text()]).toEqual([400, 'invalid percent-encoding in the instance prefix\n']);
    const deleted = await edge.request(`/cas/${hash}`, { method: 'DELETE' });
    expect([deleted.status, deleted.headers.get('allow')]).toEqual([405, 'GET, HEAD, PUT']);
    const unsized = await edge.request(`/cas/${hash}`, { method: 'PUT', body: new ReadableStream(), duplex: 'half' });
    expect([unsized.status, await unsized.text()]).toEqual([411, 'PUT needs a Content-Length header\n']);
  });

  it('leaves other paths to its routes: health, metrics, and a 404 that names the cache paths', async () => {
    const { edge, metrics, put } = app();
    expect(await (await edge.request('/healthz')).text()).toBe('ok\n');
    const other = await edge.request('/cas');
    expect([other.status, await other.text()]).toEqual([
      404,
      'not found: cache paths are /[instance/]ac/{sha256} and /[instance/]cas/{sha256}\n',
    ]);
    await put(`/cas/${hash}`);
    await edge.request(`/cas/${hash}`);
    expect(metrics.totals()).toMatchObject({
      requests: 2,
      hits: 1,
      bytesIn: data.byteLength,
      bytesOut: data.byteLength,
    });
    expect(await (await edge.request('/metrics')).text()).toMatch(
      /^larder_requests_total{.*method="GET".*outcome="hit".*} 1$/m,
    );
  });
});
