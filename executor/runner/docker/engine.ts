/**
 * A small Docker Engine API client over the unix socket, with plain node:http. Why not dockerode: the runner
 * needs thirteen endpoints (ping; image pull and inspect; container create, start, attach, wait, kill, inspect and
 * remove; exec create, start and inspect), two of them hijacked streams (attach and exec start, with `Upgrade: tcp`),
 * and owning that code keeps the framing, timeouts and errors in view, with no dependency tree (dockerode pulls in
 * docker-modem, ssh2, tar-fs…).
 *
 * Errors: an engine answer outside 2xx becomes an EngineError carrying the HTTP status and the engine's message
 * (a redirect, which the engine sends for paths it cleans up, is never followed: it is an error naming its status
 * and target); a socket that cannot be reached becomes an EngineError with status 0, naming the socket.
 */
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { LarderError } from '../../../shared/errors.ts';

/** The API version the engine here speaks (dockerd 20.10); newer engines accept it too. */
const API = '/v1.41';
/** An ordinary call that takes longer than this is treated as a stuck engine. */
const CALL_TIMEOUT_MS = 60_000;

export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class DockerEngine {
  /** Keep-alive: most calls are small and back to back (create, start, inspect), one connection serves them. */
  private readonly agent = new Agent({ keepAlive: true });

  constructor(readonly socketPath: string) {}

  /** `unix:///path` (DOCKER_HOST's form) or a bare path. Remote engines (tcp://) are not supported: no TLS set-up here. */
  static fromHost(host: string): DockerEngine {
    if (host.startsWith('unix://')) return new DockerEngine(host.slice('unix://'.length));
    if (host.startsWith('/')) return new DockerEngine(host);
    throw new LarderError('invalid_argument', `--docker-host ${host}: only unix:// sockets are supported`);
  }

  /** One call; resolves with the parsed JSON body (undefined when empty), rejects with EngineError outside 2xx. */
  async call<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const response = await this.send(method, path, body, options);
    const text = await readText(response);
    if ((response.statusCode ?? 0) >= 300) throw failed(method, path, response, text);
    if (text === '') return undefined as T;
    // Most answers are JSON; a few (/_ping) are plain text.
    return (response.headers['content-type']?.includes('json') ? JSON.parse(text) : text) as T;
  }

  /** A call whose 2xx body is a stream of JSON progress lines (image pull/import), any of which may carry an error. */
  async progress(
    method: string,
    path: string,
    body?: NodeJS.ReadableStream,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    const response = await this.send(method, path, body, { ...options, timeoutMs: 0 });
    const text = await readText(response);
    if ((response.statusCode ?? 0) >= 300) throw failed(method, path, response, text);
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      const event = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
      if (event.error !== undefined) throw new EngineError(500, event.errorDetail?.message ?? event.error);
    }
  }

  /**
   * A hijacked connection (`POST …/attach` or `/exec/{id}/start` with `Upgrade: tcp`): the engine answers 101 and
   * the socket becomes the process's stdio, multiplexed in frames (see frames.ts) when Tty is off. Ending the
   * socket's write side delivers EOF to the process's stdin. The caller owns the socket and must destroy it.
   */
  hijack(path: string, body: unknown): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const payload = JSON.stringify(body);
      const req = httpRequest({
        socketPath: this.socketPath,
        method: 'POST',
        path: API + path,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(payload),
          Connection: 'Upgrade',
          Upgrade: 'tcp',
        },
      });
      // The 101 comes at once; only the stream that follows may last (it is the command's lifetime).
      req.setTimeout(CALL_TIMEOUT_MS, () =>
        req.destroy(
          new EngineError(
            0,
            `the Docker engine at ${this.socketPath} did not answer POST ${path} within ${CALL_TIMEOUT_MS / 1000} s`,
          ),
        ),
      );
      req.once('upgrade', (_response, socket, head) => {
        socket.setTimeout(0);
        // Bytes that arrived with the 101 belong to the stream: put them back in front of it.
        if (head.byteLength > 0) socket.unshift(head);
        resolve(socket);
      });
      req.once('response', (response: IncomingMessage) => {
        readText(response).then((text) => reject(failed('POST', path, response, text)), reject);
      });
      req.once('error', (err) => reject(err instanceof EngineError ? err : unreachable(this.socketPath, err)));
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }

  private send(
    method: string,
    path: string,
    body: unknown,
    options: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const streamed = body !== undefined && typeof (body as NodeJS.ReadableStream).pipe === 'function';
      const payload = body === undefined || streamed ? undefined : JSON.stringify(body);
      const req = httpRequest({
        socketPath: this.socketPath,
        agent: this.agent,
        method,
        path: API + path,
        signal: options.signal,
        headers: streamed
          ? { 'Content-Type': 'application/x-tar' }
          : payload === undefined
            ? {}
            : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
      });
      const limit = options.timeoutMs ?? CALL_TIMEOUT_MS;
      if (limit > 0)
        req.setTimeout(limit, () =>
          req.destroy(
            new EngineError(
              0,
              `the Docker engine at ${this.socketPath} did not answer ${method} ${path} within ${limit / 1000} s`,
            ),
          ),
        );
      req.once('response', resolve);
      req.once('error', (err) =>
        reject(err instanceof EngineError || options.signal?.aborted ? err : unreachable(this.socketPath, err)),
      );
      if (streamed) (body as NodeJS.ReadableStream).pipe(req);
      else req.end(payload);
    });
  }
}

function readText(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    response.once('error', reject);
  });
}

/**
 * An answer outside 2xx as an EngineError with its status. A redirect or an empty body says nothing by itself (the
 * engine's redirects have no body), so the message then names the call and the status.
 */
function failed(method: string, path: string, response: IncomingMessage, text: string): EngineError {
  const status = response.statusCode ?? 0;
  if (status >= 300 && status < 400) {
    const target = response.headers.location;
    return new EngineError(
      status,
      `the Docker engine answered ${method} ${path} with a redirect (HTTP ${status}${target === undefined ? '' : ` to ${target}`}), which larder does not follow`,
    );
  }
  const message = messageOf(text);
  return new EngineError(
    status,
    message === '' ? `the Docker engine answered ${method} ${path} with HTTP ${status} and no message` : message,
  );
}

/** The engine's error bodies are `{"message": "…"}`; anything else is quoted as it came. */
function messageOf(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: string };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 500);
}

function unreachable(socketPath: string, err: Error): EngineError {
  return new EngineError(0, `cannot reach the Docker engine at ${socketPath}: ${err.message}`);
}
