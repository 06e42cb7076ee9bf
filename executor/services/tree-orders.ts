/**
 * Remembers, for recent GetTree walks, the order in which each directory was met, so a call with a page
 * token fetches only that page's directories instead of walking again from the root. Keyed by instance and
 * root; bounded by the number of directories held across all trees (least recently used trees go first).
 * A token whose tree is no longer remembered still works: the walk is simply repeated (the order of a walk
 * is a pure function of the stored directories).
 */
import type { Digest } from '../../shared/digest.ts';

export class TreeOrders {
  readonly #trees = new Map<string, readonly Digest[]>();
  readonly #maxDirectories: number;
  #held = 0;

  /** About 100 bytes per directory: the default holds a few trees of tens of thousands of directories in ~20 MB. */
  constructor(maxDirectories = 200_000) {
    this.#maxDirectories = maxDirectories;
  }

  get(key: string): readonly Digest[] | undefined {
    const order = this.#trees.get(key);
    if (order !== undefined) {
      this.#trees.delete(key);
      this.#trees.set(key, order);
    }
    return order;
  }

  set(key: string, order: readonly Digest[]): void {
    this.#drop(key);
    if (order.length > this.#maxDirectories) return;
    for (const [oldest] of this.#trees) {
      if (this.#held + order.length <= this.#maxDirectories) break;
      this.#drop(oldest);
    }
    this.#trees.set(key, order);
    this.#held += order.length;
  }

  #drop(key: string): void {
    const order = this.#trees.get(key);
    if (order === undefined) return;
    this.#trees.delete(key);
    this.#held -= order.length;
  }
}
