/**
 * The load-generator process. run.ts starts it once (pinned to its own core, away from the server under
 * test) and sends it commands over IPC; it holds all blob material so the orchestrator stays small.
 *
 * Load comes from autocannon (HTTP/1.1 keep-alive, one request in flight per connection). Two things are
 * done around it so that autocannon measures the server rather than itself:
 * - each connection's requests are built once up front where they can be (GET), or from a shared
 *   pre-hashed source (PUT), so the generator never hashes a body while the clock runs;
 * - autocannon by default appends every response body to a JS string (for its expectBody option, which
 *   we do not use); for 1 MiB responses that decoding costs more than the request itself, so each client's
 *   body accumulator is replaced by a no-op. Byte counts and timings are unaffected.
 * Latency percentiles come from autocannon's per-response timings (sub-millisecond floats), recorded here,
 * because its own histogram keeps whole milliseconds only.
 */
import autocannon from 'autocannon';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { blobSet, FreshBlobs, StreamedBlob, type Blob } from './blobs.ts';
import type { Command, LoadResult, Reply, Scenario, StreamResult } from './protocol.ts';

const sets = new Map<number, Blob[]>();
const fresh = new Map<number, FreshBlobs>();
const streamed = new Map<number, StreamedBlob>();

function casPath(hash: string): string {
  return `/cas/${hash}`;
}

async function populate(url: string, size: number, count: number): Promise<number> {
  let blobs = sets.get(size);
  if (blobs === undefined || blobs.length < count) {
    blobs = blobSet(size, count);
    sets.set(size, blobs);
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  try {
    await Promise.all(
      blobs.map(async (blob) => {
        const { status } = await send(url, 'PUT', casPath(blob.hash), agent, blob.body);
        if (status < 200 || status > 299) throw new Error(`populate: PUT ${casPath(blob.hash)} answered ${status}`);
      }),
    );
  } finally {
    agent.destroy();
  }
  return blobs.length;
}

function send(url: string, method: string, path: string, agent: Agent, body?: Buffer): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url),
      { method, agent, headers: body ? { 'content-length': body.length } : {} },
      (res) => {
        res.resume();
        res.once('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

type AcRequest = autocannon.Request;

/** Per-scenario request plumbing: requests for one client, given its index. */
function requestsFor(scenario: Scenario, size: number): (clientIndex: number) => AcRequest[] {
  switch (scenario) {
    case 'get-hit': {
      const blobs = need(size);
      // Prebuilt GETs, each connection starting at a different blob so they spread over the set.
      return (i) => blobs.map((_, j) => ({ method: 'GET', path: casPath(blobs[(i * 7 + j) % blobs.length]!.hash) }));
    }
    case 'put-existing': {
      const blobs = need(size);
      let next = 0;
      return () => [
        {
          method: 'PUT',
          setupRequest: (req) => {
            const blob = blobs[next++ % blobs.length]!;
            return { ...req, path: casPath(blob.hash), body: blob.body };
          },
        },
      ];
    }
    case 'put-new': {
      let source = fresh.get(size);
      if (source === undefined) {
        source = new FreshBlobs(size);
        fresh.set(size, source);
      }
      const blobs = source;
      return () => [
        {
          method: 'PUT',
          setupRequest: (req) => {
            // The template is copied into the request buffer as soon as this returns, so reusing it is safe.
            const blob = blobs.next();
            return { ...req, path: casPath(blob.hash), body: blob.body };
          },
        },
      ];
    }
  }
}

function need(size: number): Blob[] {
  const blobs = sets.get(size);
  if (blobs === undefined) throw new Error(`no blob set of ${size} bytes: populate first`);
  return blobs;
}

/** Growable list of latencies in ms. */
class Samples {
  #values = new Float64Array(1 << 16);
  #length = 0;
  push(value: number): void {
    if (this.#length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#length++] = value;
  }
  percentile(p: number): number {
    if (this.#length === 0) return Number.NaN;
    const sorted = this.#values.slice(0, this.#length).sort();
    return sorted[Math.min(this.#length - 1, Math.ceil((p / 100) * this.#length) - 1)]!;
  }
}

async function load(command: Extract<Command, { op: 'load' }>): Promise<LoadResult> {
  const makeRequests = requestsFor(command.scenario, command.size);
  let clientIndex = 0;
  const latencies = new Samples();
  const statuses: Record<string, number> = {};
  let ok = 0;
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: command.url,
        connections: command.connections,
        pipelining: 1,
        duration: command.seconds,
        timeout: 30,
        requests: makeRequests(0),
        setupClient(client) {
          // See the header: skip autocannon's response-body string building.
          (client as unknown as { pipelinedRequests: { addBody(data: unknown): void } }).pipelinedRequests.addBody =
            () => {};
          client.setRequests(makeRequests(clientIndex++));
        },
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode <= 299) {
        ok++;
        latencies.push(responseTime);
      } else {
        statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      }
    });
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    ok,
    statuses,
    errors: result.errors - result.timeouts,
    timeouts: result.timeouts,
    seconds,
    p50Ms: latencies.percentile(50),
    p99Ms: latencies.percentile(99),
    generatorCpu: ((cpu.user + cpu.system) / 1e6 / seconds) * 100,
  };
}

/**
 * One big blob over one raw keep-alive-less TCP connection. The HTTP client is hand-rolled (a request line,
 * Content-Length, then the body; the reply's head parsed by hand) because node:http's client tops out
 * below what nginx serves on loopback, which would make the client the thing measured. A GET's body is
 * compared byte for byte with the blob as generated (much cheaper than hashing it while the clock runs).
 */
async function stream(url: string, size: number, direction: 'put' | 'get'): Promise<StreamResult> {
  let blob = streamed.get(size);
  if (blob === undefined) {
    blob = new StreamedBlob(size);
    streamed.set(size, blob);
  }
  const path = casPath(blob.hash); // hashed before the clock starts
  const target = new URL(url);
  const socket = connect(Number(target.port), target.hostname);
  await once(socket, 'connect');
  const started = process.hrtime.bigint();
  const head =
    direction === 'put'
      ? `PUT ${path} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`
      : `GET ${path} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`;
  const reply = readReply(socket, direction === 'get' ? blob : null);
  socket.write(head);
  if (direction === 'put') {
    for (const chunk of blob.chunks()) {
      if (!socket.write(chunk)) await once(socket, 'drain');
    }
  }
  const { status, bytes, matches } = await reply;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  socket.destroy();
  const ok = status >= 200 && status <= 299;
  return { status, bytes, seconds, verified: direction === 'put' ? ok : ok && matches && bytes === size };
}

/** Reads an HTTP/1.1 reply to its Content-Length; with `expected`, compares the body to that blob. */
function readReply(
  socket: Socket,
  expected: StreamedBlob | null,
): Promise<{ status: number; bytes: number; matches: boolean }> {
  return new Promise((resolve, reject) => {
    let headBuffer: Buffer | null = Buffer.alloc(0);
    let status = 0;
    let length = -1;
    let bytes = 0;
    let matches = true;
    const body = (data: Buffer) => {
      if (expected && matches) matches = expected.matches(bytes, data);
      bytes += data.length;
      if (length >= 0 && bytes >= length) finish();
    };
    const finish = () => {
      socket.off('data', onData);
      resolve({ status, bytes, matches });
    };
    const onData = (data: Buffer) => {
      if (headBuffer === null) return body(data);
      headBuffer = Buffer.concat([headBuffer, data]);
      const end = headBuffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const text = headBuffer.subarray(0, end).toString('latin1');
      const rest = headBuffer.subarray(end + 4);
      headBuffer = null;
      status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
      body(rest);
      if (length === 0) finish();
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () =>
      headBuffer !== null || bytes < length
        ? reject(new Error(`connection closed after ${bytes} of ${length} body bytes`))
        : undefined,
    );
  });
}

async function handle(command: Command): Promise<unknown> {
  switch (command.op) {
    case 'populate':
      return populate(command.url, command.size, command.count);
    case 'load':
      return load(command);
    case 'stream':
      return stream(command.url, command.size, command.direction);
    case 'forget':
      sets.delete(command.size);
      fresh.delete(command.size);
      streamed.delete(command.size);
      return null;
  }
}

if (!process.send) {
  console.error('bench/loadgen.ts is started by bench/run.ts over IPC');
  process.exit(2);
}
process.on('message', (message: { id: number; command: Command }) => {
  handle(message.command).then(
    (value) => process.send!({ id: message.id, ok: true, value } satisfies Reply),
    (err: unknown) =>
      process.send!({ id: message.id, ok: false, error: (err as Error)?.stack ?? String(err) } satisfies Reply),
  );
});
process.on('disconnect', () => process.exit(0));
