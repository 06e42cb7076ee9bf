/**
 * What the Redis scheduler and the worker slots it hands out share: the fleet's Redis connections (commands, and
 * the subscriber behind `events`), the key prefix, the Lua scripts of scripts.ts, the settings and the log. The
 * scheduler opens one, passes it to each worker slot, and closes it last; a slot only uses it.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { LarderError } from '../../../shared/errors.ts';
import type { Logger } from '../../../shared/log.ts';
import { RpcError } from '../../reapi/grpc-status.ts';
import { connectionOptions, type QueueConnection, redactUrl } from './connection.ts';
import { OperationEvents } from './events.ts';
import { SCRIPTS, type ScriptName } from './scripts.ts';

export interface FleetOptions extends QueueConnection {
  log: Logger;
  /** Key prefix, so fleets can share a Redis. Default `larder:`. */
  prefix?: string;
  /** How long a claimed job is a worker's without renewal. Default 30 s (renewed every third of it). */
  leaseMs?: number;
  /** Deliveries of one job before it fails instead of going to yet another worker. Default 3. */
  maxAttempts?: number;
  /** A worker that has not heartbeaten for this long is not counted as live. Default 15 s. */
  heartbeatMs?: number;
  /**
   * How long queued jobs wait once no live worker can take them (all that could left, or stopped heartbeating)
   * before they fail with UNAVAILABLE: room for a worker to restart. Default heartbeatMs.
   */
  strandedGraceMs?: number;
  /** How long a finished operation's result stays for WaitExecution. Default 10 minutes. */
  retainMs?: number;
  /** Bound on an unfinished operation's keys, should every process forget it. Default 1 day. */
  inFlightTtlMs?: number;
  /** How long close() waits for the runs of leases held here to stop and hand their jobs back. Default 15 s. */
  shutdownGraceMs?: number;
  /** The longest an idle worker blocks in BLPOP before looking at the queues itself. Default 5 s. */
  wakeTimeoutMs?: number;
}

export type FleetConfig = Required<Omit<FleetOptions, 'log' | 'passwordFile' | 'caPath'>>;

export class FleetConnection {
  readonly config: FleetConfig;
  readonly log: Logger;
  /** The connection for commands and scripts (not for blocking ones: connect() makes those their own). */
  readonly redis: Redis;
  /** Operation events, on a subscriber connection of their own. */
  readonly events: OperationEvents;
  private readonly subscriber: Redis;
  /** Address, credentials and TLS of every connection (connection.ts). */
  private readonly connection: RedisOptions;
  /** Connections closed on purpose (close(), disconnect()): the only ones left ended. */
  private readonly retired = new WeakSet<Redis>();

  private constructor(options: FleetOptions, connection: RedisOptions) {
    this.connection = connection;
    this.config = withDefaults(options);
    this.log = options.log;
    this.redis = this.connect('commands', { maxRetriesPerRequest: 2 });
    // defineCommand sends each script once and then calls it by SHA (EVALSHA), reloading it after a restart.
    for (const [name, script] of Object.entries(SCRIPTS)) this.redis.defineCommand(`larder_${name}`, script);
    this.subscriber = this.connect('events', { maxRetriesPerRequest: null });
    this.events = new OperationEvents(this.subscriber, this.config.prefix);
  }

  /** Connects and checks that Redis answers, so a wrong --queue fails at start, not at the first action. */
  static async open(options: FleetOptions): Promise<FleetConnection> {
    const fleet = new FleetConnection(options, await connectionOptions(options));
    // A refused login or certificate fails the connection, not the command (which only runs out of retries):
    // the connection's own error is the one worth reporting.
    const seen: { error?: Error } = {};
    const remember = (err: Error) => {
      seen.error = err;
    };
    fleet.redis.on('error', remember);
    try {
      await fleet.guard(() => fleet.redis.ping());
    } catch (err) {
      await fleet.close();
      const refused = seen.error?.message;
      if (refused === undefined || (err as Error).message.includes(refused)) throw err;
      throw new LarderError(
        'unavailable',
        `cannot connect to the queue (Redis at ${redactUrl(options.url)}): ${refused}`,
      );
    } finally {
      fleet.redis.off('error', remember);
    }
    return fleet;
  }

  /**
   * A Redis connection that reconnects forever (with backoff) and logs its troubles instead of throwing them.
   * Close it with disconnect(), not its own methods: a connection that ends otherwise is opened again.
   */
  connect(role: string, options: { maxRetriesPerRequest: number | null }): Redis {
    const redis = new Redis({
      ...this.connection,
      ...options,
      connectionName: `larder-${role}`,
      retryStrategy: (times) => Math.min(times * 100, 2_000),
    });
    let lastLog = 0;
    redis.on('error', (err: Error) => {
      if (Date.now() - lastLog < 5_000) return;
      lastLog = Date.now();
      this.log.warn('redis connection trouble', { role, redis: redactUrl(this.config.url), error: err.message });
    });
    this.reopenWhenEnded(redis, role);
    return redis;
  }

  /**
   * ioredis gives a connection up for good ('end') when its connector fails to open a socket, not only when it
   * is closed: a reconnection asked for while one is under way (after a fatal reply, or READONLY from a demoted
   * primary) makes the connector fail with "Connection is closed.". Every command on it then fails at once, and
   * a worker would never run anything again. Such a connection is opened again, after a pause that doubles up to
   * REOPEN_MAX_MS at each end without a 'ready' between (so at most one attempt per REOPEN_MAX_MS while Redis
   * stays away), until it is disconnected on purpose.
   */
  private reopenWhenEnded(redis: Redis, role: string): void {
    let ended = 0;
    let timer: NodeJS.Timeout | undefined;
    redis.on('ready', () => {
      ended = 0;
    });
    redis.on('end', () => {
      if (this.retired.has(redis)) return;
      const pauseMs = Math.min(REOPEN_FIRST_MS * 2 ** ended++, REOPEN_MAX_MS);
      this.log.warn('redis connection ended on its own; opening it again', {
        role,
        redis: redactUrl(this.config.url),
        inMs: pauseMs,
      });
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!this.retired.has(redis) && redis.status === 'end') redis.connect().catch(() => {});
      }, pauseMs);
      timer.unref();
    });
  }

  /** Closes a connection made by connect() for good. */
  disconnect(redis: Redis): void {
    this.retired.add(redis);
    redis.disconnect();
  }

  /** Runs one of scripts.ts with the prefix as its first argument. */
  script<T>(name: ScriptName, ...args: (string | number)[]): Promise<T> {
    const command = (this.redis as unknown as Record<string, (...a: (string | number)[]) => Promise<T>>)[
      `larder_${name}`
    ]!;
    return command.call(this.redis, this.config.prefix, ...args);
  }

  key(...parts: string[]): string {
    return `${this.config.prefix}${parts.join(':')}`;
  }

  /** Redis failures become UNAVAILABLE with the reason; deliberate errors pass through. */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RpcError || err instanceof LarderError) throw err;
      throw new LarderError(
        'unavailable',
        `the queue (Redis at ${redactUrl(this.config.url)}) failed: ${(err as Error).message}`,
      );
    }
  }

  /** Closes the two shared connections; connections made by connect() are their owners' to close. */
  async close(): Promise<void> {
    this.disconnect(this.subscriber);
    this.retired.add(this.redis);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** The first pause before an ended connection is opened again, and the longest (reopenWhenEnded). */
const REOPEN_FIRST_MS = 250;
const REOPEN_MAX_MS = 10_000;

function withDefaults(options: FleetOptions): FleetConfig {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  return {
    url: options.url,
    prefix: options.prefix ?? 'larder:',
    leaseMs: options.leaseMs ?? 30_000,
    maxAttempts: options.maxAttempts ?? 3,
    heartbeatMs,
    strandedGraceMs: options.strandedGraceMs ?? heartbeatMs,
    retainMs: options.retainMs ?? 10 * 60_000,
    inFlightTtlMs: options.inFlightTtlMs ?? 24 * 3600_000,
    wakeTimeoutMs: options.wakeTimeoutMs ?? 5_000,
    shutdownGraceMs: options.shutdownGraceMs ?? 15_000,
  };
}
