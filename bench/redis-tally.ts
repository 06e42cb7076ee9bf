/**
 * A counting TCP proxy in front of Redis, for the fleet bench: each process of a fleet (a frontend, the workers)
 * gets a proxy of its own, so what each side asks of Redis is counted apart, exactly, however loaded the machine:
 *
 * - commands: every request a client sends (RESP arrays), by name; EVALSHA is named after the larder script whose
 *   SHA-1 it carries (scripts.ts), so `claim` and `complete` show apart. Commands run inside scripts are not
 *   requests and are not counted.
 * - round trips: on each connection, the times the client sent something after having heard from Redis since its
 *   last send. Requests sent back to back (pipelined, or sent in the same tick) count once; each wait for an
 *   answer before the next request counts once; a blocking read counts once however long it blocks.
 *
 * The proxy costs a hop through this process's event loop, so timings taken through it are not the fleet's:
 * the bench counts in a pass of its own.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { SCRIPTS } from '../executor/scheduler/redis/scripts.ts';

export interface RedisTally {
  /** Commands by name (scripts by their scripts.ts name). */
  commands: Map<string, number>;
  roundTrips: number;
}

export interface CountingProxy {
  /** redis://127.0.0.1:PORT, to hand a process instead of Redis's own URL. */
  url: string;
  /** What was counted since start (or the last reset). */
  tally(): RedisTally;
  reset(): void;
  close(): Promise<void>;
}

/** The SHA-1 of each script, as ioredis's defineCommand sends it with EVALSHA. */
const SCRIPT_NAMES = new Map(
  Object.entries(SCRIPTS).map(([name, { lua }]) => [createHash('sha1').update(lua).digest('hex'), name]),
);

export async function startCountingProxy(redisPort: number): Promise<CountingProxy> {
  let commands = new Map<string, number>();
  let roundTrips = 0;
  const sockets = new Set<Socket>();
  const count = (name: string) => commands.set(name, (commands.get(name) ?? 0) + 1);

  const server: Server = createServer((client) => {
    const upstream = connect(redisPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const parser = new RequestParser(count);
    /** Whether Redis has sent anything since this client's last send: the next send starts a round trip. */
    let answered = true;
    client.on('data', (chunk: Buffer) => {
      if (answered) roundTrips++;
      answered = false;
      parser.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      answered = true;
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on('close', end);
      socket.on('error', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    tally: () => ({ commands: new Map(commands), roundTrips }),
    reset() {
      commands = new Map();
      roundTrips = 0;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Splits a client's byte stream into RESP requests (arrays of bulk strings, as ioredis sends them) and reports
 * each one's name. Bytes are kept only until the request they belong to is complete.
 */
class RequestParser {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly onCommand: (name: string) => void) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      const parsed = this.parseOne();
      if (parsed === null) return;
      this.pending = this.pending.subarray(parsed);
    }
  }

  /** Parses the request at the start of `pending`: reports it and returns its length, or null if incomplete. */
  private parseOne(): number | null {
    const buf = this.pending;
    if (buf.length === 0) return null;
    if (buf[0] !== 0x2a /* '*' */)
      throw new Error(`not a RESP request: ${JSON.stringify(buf.subarray(0, 20).toString())}`);
    let at = 0;
    const line = (): string | null => {
      const end = buf.indexOf('\r\n', at);
      if (end < 0) return null;
      const text = buf.toString('latin1', at, end);
      at = end + 2;
      return text;
    };
    const header = line();
    if (header === null) return null;
    const count = Number(header.slice(1));
    const args: string[] = [];
    for (let i = 0; i < count; i++) {
      const size = line();
      if (size === null) return null;
      const length = Number(size.slice(1));
      if (buf.length < at + length + 2) return null;
      // Only the first two arguments are read (the command, and a script's SHA).
      if (i < 2) args.push(buf.toString('latin1', at, at + length));
      at += length + 2;
    }
    const name = args[0]?.toLowerCase() ?? '';
    this.onCommand(name === 'evalsha' ? (SCRIPT_NAMES.get(args[1] ?? '') ?? 'evalsha') : name);
    return at;
  }
}
