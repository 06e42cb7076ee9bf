/**
 * Operation events over Redis pub/sub: one subscriber connection per process, one channel per operation
 * (`P ev:NAME`), subscribed while someone in this process listens. Pub/sub is at most once (a message sent
 * while the connection is down is lost), so after every reconnection each listener is called once, and
 * followers re-read the state; the Execution service also re-reads at every keepalive.
 */
import type { Redis } from 'ioredis';

export type EventListener = (message: string) => void;

export class OperationEvents {
  private readonly listeners = new Map<string, Set<EventListener>>();
  private everConnected = false;

  constructor(
    private readonly subscriber: Redis,
    private readonly prefix: string,
  ) {
    subscriber.on('message', (channel: string, message: string) => {
      for (const listener of [...(this.listeners.get(channel) ?? [])]) listener(message);
    });
    subscriber.on('ready', () => {
      // ioredis resubscribes by itself; what was published meanwhile is gone, so everyone looks again.
      if (this.everConnected)
        for (const set of this.listeners.values()) for (const listener of [...set]) listener('changed');
      this.everConnected = true;
    });
  }

  /** Calls `listener` with each event of operation `name` until the returned function is called. */
  async listen(name: string, listener: EventListener): Promise<() => void> {
    const channel = `${this.prefix}ev:${name}`;
    let set = this.listeners.get(channel);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(channel, set);
      await this.subscriber.subscribe(channel);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(channel) === set) {
        this.listeners.delete(channel);
        this.subscriber.unsubscribe(channel).catch(() => {});
      }
    };
  }
}
