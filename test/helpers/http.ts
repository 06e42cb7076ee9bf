/** HTTP helpers for protocol tests: hashing, raw-socket requests (for what fetch refuses to send), keep-alive agents. */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function randomBlob(size: number): { data: Buffer; hash: string } {
  const data = randomBytes(size);
  return { data, hash: sha256(data) };
}

export interface RawResponse {
  status: number;
  text: string;
}

/**
 * Sends bytes exactly as given over a fresh socket and reads the status line and body; for hostile paths
 * and broken framing that fetch would normalise or refuse.
 */
export function rawRequest(
  url: string,
  request: string | Buffer,
  options: { endAfterWrite?: boolean } = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let received = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (d) => (received += d.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      const match = /^HTTP\/1\.1 (\d{3})/.exec(received);
      if (!match) return reject(new Error(`no HTTP response: ${JSON.stringify(received.slice(0, 200))}`));
      resolve({ status: Number(match[1]), text: received.slice(received.indexOf('\r\n\r\n') + 4) });
    });
    socket.write(request, () => {
      if (options.endAfterWrite !== false) socket.end();
    });
  });
}

/** Starts an upload that promises `declared` bytes, sends `sent` of them, then drops the connection. */
export function abortedUpload(url: string, path: string, declared: number, sent: number): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(`PUT ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${declared}\r\n\r\n`);
      socket.write(randomBytes(sent), () => {
        // Let the bytes reach the server before the connection goes away.
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
    });
    socket.on('error', reject);
  });
}

export interface SimpleResponse {
  status: number;
  body: Buffer;
  headers: http.IncomingHttpHeaders;
}

/** One request on a given keep-alive agent (fetch's pool can't be sized per test). */
export function request(
  agent: http.Agent,
  url: string,
  method: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const sent = body ? { ...headers, 'content-length': body.length } : headers;
    const req = http.request(url, { method, agent, headers: sent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
