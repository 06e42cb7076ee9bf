/**
 * Keeps the executor's V8 old generation at least HEAP_ROOM_BYTES away from its limit after each full collection.
 *
 * A large upload allocates little on V8's heap: its bytes live in buffers outside it (node:http2 reads every socket read
 * into a new 64 KiB one). V8 reads that as a program that hardly allocates and sets the old generation's limit barely
 * above what is live (1.1×, or 8 MiB more); with the executor's small heap (16–25 MiB live) that limit is so close
 * that every young collection, which the short-lived read buffers bring on every 32 MiB or so, starts a full
 * mark-compact, with concurrent marking on the other core. Measured on a fresh executor taking 64 MiB ByteStream
 * Writes: 1–3 full collections per Write once that state is reached, and the Write's server CPU up to doubled
 * (issue 21). Room of 24 MiB beyond what is live still did that; 48 MiB did it now and then; 64 MiB not at all.
 *
 * V8 has one knob for it, the growth factor (--heap-growing-percent, read whenever V8 sets a new limit, so it can be
 * changed while running): after each full collection it is set to give HEAP_ROOM_BYTES of room over what is live.
 * The memory cost is that room: up to 64 MiB more garbage in the old generation than V8 would keep at its most
 * frugal. A heap of LARGE_HEAP_BYTES or more has that much room anyway, and there V8 chooses alone again.
 */
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

/** Room kept between what is live after a full collection and the old generation's limit. */
export const HEAP_ROOM_BYTES = 64 * 1024 * 1024;

/** From this live size on, V8's own smallest room (a tenth of what is live) is HEAP_ROOM_BYTES or more. */
export const LARGE_HEAP_BYTES = 10 * HEAP_ROOM_BYTES;

/** --heap-growing-percent for a heap with `liveBytes` live: HEAP_ROOM_BYTES of room, or 0 (V8's own factor). */
export function growingPercentFor(liveBytes: number): number {
  if (liveBytes >= LARGE_HEAP_BYTES) return 0;
  return Math.ceil((100 * HEAP_ROOM_BYTES) / Math.max(liveBytes, 1024 * 1024));
}

/**
 * Sets the factor for this process now and again after every full collection; call it once, early, in a process
 * that serves uploads. Returns what stops it.
 */
export function keepHeapRoom(): () => void {
  let current = -1;
  const adjust = () => {
    const percent = growingPercentFor(getHeapStatistics().used_heap_size);
    if (percent === current) return;
    setFlagsFromString(`--heap-growing-percent=${percent}`);
    current = percent;
  };
  adjust();
  const observer = new PerformanceObserver((list) => {
    if (list.getEntries().some((entry) => (entry as { detail?: { kind?: number } }).detail?.kind === MAJOR)) adjust();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}

const MAJOR = constants.NODE_PERFORMANCE_GC_MAJOR;
