// The edge serving HTTPS itself (--tls-cert/--tls-key) on Node and on Deno: it says https:// when it is
// listening, answers a client that trusts the certificate, and does not speak plain HTTP on that port.
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { randomBlob } from '../helpers/http.ts';
import { requireTool } from '../helpers/tools.ts';
import { type TestCertificate, makeCertificate, opensslPath } from '../executor/tls.ts';
import { bytesOf } from '../helpers/bytes.ts';

const haveOpenssl = requireTool('openssl', opensslPath(), 'apt-get install openssl');
const runtimes = edgeRuntimes();

function httpsRequest(
  url: string,
  method: string,
  ca: Buffer,
  body?: Buffer,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('timeout', () => req.destroy(new Error('https request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

describe.runIf(haveOpenssl).each(runtimes)('HTTPS on %s', (runtime) => {
  const dir = tempDir('larder-tls-');
  let cert: TestCertificate;
  let edge: EdgeProcess;

  beforeAll(async () => {
    cert = makeCertificate(dir.path);
    edge = await startEdgeProcess({
      runtime,
      args: ['--store', 'memory', '--tls-cert', cert.certPath, '--tls-key', cert.keyPath],
    });
  });
  afterAll(async () => {
    await edge?.stop();
    dir.remove();
  });

  it('announces https:// and serves the cache over TLS', async () => {
    expect(edge.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(edge.output()).toMatch(new RegExp(`larder edge \\(${runtime}\\) listening on https://`));
    const { data, hash } = randomBlob(4096);
    expect((await httpsRequest(`${edge.url}/cas/${hash}`, 'PUT', cert.cert, data)).status).toBe(200);
    const got = await httpsRequest(`${edge.url}/cas/${hash}`, 'GET', cert.cert);
    expect(got.status).toBe(200);
    expect(bytesOf(got.body)).toEqual(bytesOf(data));
  });

  it('refuses clients that do not trust the certificate, and plain http', async () => {
    await expect(httpsRequest(`${edge.url}/healthz`, 'GET', Buffer.from(''))).rejects.toThrow();
    const plain = await fetch(`${edge.url.replace('https://', 'http://')}/healthz`, {
      signal: AbortSignal.timeout(5_000),
    }).then(
      (res) => res.status,
      () => 'refused',
    );
    expect(plain).not.toBe(200);
  });
});
