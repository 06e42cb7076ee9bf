/**
 * The last hour of traffic for the status page's chart: the running totals (metrics.ts) sampled once a minute,
 * so a point is what happened during that minute. `series()` adds the current totals as a last, partial point,
 * so traffic shows up on the page at once rather than at the next minute.
 */
import type { Totals } from './metrics.ts';

export interface HistoryPoint {
  /** End of the interval, in Unix seconds (what uPlot's time axis takes). */
  t: number;
  /** Cache requests during the interval. */
  requests: number;
  /** Hits among the reads answered (hit or miss) during the interval, 0–1; null when there were none. */
  hitRatio: number | null;
}

export interface HistoryOptions {
  totals: () => Pick<Totals, 'requests' | 'hits' | 'misses'>;
  /** How often a sample is taken; default one minute. */
  intervalMs?: number;
  /** How much is kept; default one hour. */
  spanMs?: number;
  now?: () => number;
}

interface Sample {
  at: number;
  requests: number;
  hits: number;
  misses: number;
}

export class History {
  readonly #options: Required<HistoryOptions>;
  readonly #samples: Sample[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: HistoryOptions) {
    this.#options = { intervalMs: 60_000, spanMs: 3_600_000, now: Date.now, ...options };
    this.sample();
  }

  /** Samples every interval until stop(); the timer does not keep a Node process alive. */
  start(): this {
    this.#timer ??= setInterval(() => this.sample(), this.#options.intervalMs);
    (this.#timer as { unref?: () => void }).unref?.();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample now and forgets those older than the span (plus the one the oldest point starts from). */
  sample(): void {
    const { requests, hits, misses } = this.#options.totals();
    this.#samples.push({ at: this.#options.now(), requests, hits, misses });
    const oldest = this.#options.now() - this.#options.spanMs;
    while (this.#samples.length > 2 && this.#samples[1]!.at <= oldest) this.#samples.shift();
  }

  /** One point per interval of the last span, oldest first, the last one up to now. */
  series(): HistoryPoint[] {
    const { requests, hits, misses } = this.#options.totals();
    const all = [...this.#samples, { at: this.#options.now(), requests, hits, misses }];
    const points: HistoryPoint[] = [];
    for (let i = 1; i < all.length; i++) {
      const [from, to] = [all[i - 1]!, all[i]!];
      const answered = to.hits - from.hits + (to.misses - from.misses);
      points.push({
        t: Math.round(to.at / 1000),
        requests: to.requests - from.requests,
        hitRatio: answered === 0 ? null : (to.hits - from.hits) / answered,
      });
    }
    return points;
  }
}
