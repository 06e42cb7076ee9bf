/**
 * The wall clock with sub-millisecond resolution, for ExecutedActionMetadata. Date gives whole milliseconds, too
 * coarse for an action whose phases last a millisecond or two; the monotonic clock (performance.now()) is fine but
 * not the wall clock, and the metadata is compared across processes and hosts. So the monotonic clock is anchored
 * to the wall clock and every reading is kept inside the millisecond Date.now() names: it never strays from the
 * wall clock by a millisecond, however long the process runs or the wall clock is slewed or stepped.
 */
import { type Timestamp, TimestampSchema } from '@bufbuild/protobuf/wkt';
import { create } from '@bufbuild/protobuf';

/** Wall-clock ms minus monotonic ms; moved whenever a reading leaves the millisecond Date.now() names. */
let offsetMs = performance.timeOrigin;
/** The last reading: readings never go back within this process while the wall clock does not. */
let lastMs = 0;

/** Ms since the epoch, with microseconds, within the millisecond Date.now() gives. */
export function preciseWallClockMs(): number {
  const monotonic = performance.now();
  const wall = Date.now();
  let ms = offsetMs + monotonic;
  if (ms < wall || ms >= wall + 1) {
    offsetMs = wall + 0.5 - monotonic;
    ms = wall + 0.5;
  }
  // Re-anchoring may land below a reading taken earlier in the same millisecond.
  if (ms < lastMs && lastMs < wall + 1) ms = lastMs;
  lastMs = ms;
  return ms;
}

/** preciseWallClockMs() as a protobuf Timestamp. */
export function preciseTimestamp(): Timestamp {
  const ms = preciseWallClockMs();
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, {
    seconds: BigInt(seconds),
    nanos: Math.min(999_999_999, Math.floor((ms - seconds * 1000) * 1e6)),
  });
}
