/**
 * Operation events over Redis pub/sub: one subscriber connection per process, one channel per operation
 * (`P ev:NAME`), subscribed while someone in this process listens, and channels of other kinds (a frontend's reply
 * channel, a worker slot's) by their own names. Pub/sub is at most once (a message sent while the connection is
 * down is lost), so after every reconnection each listener is called once with 'changed', and followers re-read
 * the state; the Execution service also re-reads at every keepalive.
 */
import type { Redis } from 'ioredis';

export type EventListener = (message: string) => void;

export class OperationEvents {
  private readonly listeners = new Map<string, Channel>();
  private everConnected = false;

  constructor(
    private readonly subscriber: Redis,
    private readonly prefix: string,
  ) {
    subscriber.on('message', (channel: string, message: string) => {
      for (const listener of [...(this.listeners.get(channel)?.listeners ?? [])]) listener(message);
    });
    subscriber.on('ready', () => {
      // ioredis resubscribes by itself; what was published meanwhile is gone, so everyone looks again.
      if (this.everConnected)
        for (const { listeners } of this.listeners.values()) for (const listener of [...listeners]) listener('changed');
      this.everConnected = true;
    });
  }

  /**
   * Calls `listener` with each event of operation `name` until the returned function is called. It hears every
   * event published once this resolves, and may hear some published before: it is added before the SUBSCRIBE is
   * sent, as the reply and the first messages can come in one read.
   */
  listen(name: string, listener: EventListener): Promise<() => void> {
    return this.listenOn(`${this.prefix}ev:${name}`, listener);
  }

  /** As listen(), on channel `channel` (its full name, prefix included). */
  async listenOn(channel: string, listener: EventListener): Promise<() => void> {
    let entry = this.listeners.get(channel);
    if (entry === undefined) {
      const created: Channel = { listeners: new Set(), subscribed: this.subscriber.subscribe(channel) };
      entry = created;
      this.listeners.set(channel, entry);
      // A failed SUBSCRIBE is its listeners' to see (below); the channel is dropped so that the next listen retries.
      created.subscribed.catch(() => {
        if (this.listeners.get(channel) === created) this.listeners.delete(channel);
      });
    }
    const { listeners } = entry;
    listeners.add(listener);
    const stop = () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.listeners.get(channel) === entry) {
        this.listeners.delete(channel);
        this.subscriber.unsubscribe(channel).catch(() => {});
      }
    };
    try {
      await entry.subscribed;
    } catch (err) {
      listeners.delete(listener);
      throw err;
    }
    return stop;
  }
}

/** A channel listened to in this process: its listeners, and its SUBSCRIBE (resolved once it is on). */
interface Channel {
  listeners: Set<EventListener>;
  subscribed: Promise<unknown>;
}
