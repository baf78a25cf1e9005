import type { Clock } from '@multiagents/core';

/** A plausible "now" (2023-11-14) so timestamps in failing tests read like real ones. */
export const DEFAULT_MANUAL_CLOCK_START_MS = 1_700_000_000_000;

/**
 * A {@link Clock} that only moves when the test moves it, so timeouts and backoff are tested
 * without real sleeps.
 *
 * @example
 * const clock = new ManualClock();
 * const store = new MemoryStateStore({ clock });
 * clock.advance(5_000);
 */
export class ManualClock implements Clock {
  private current: number;

  constructor(startMs: number = DEFAULT_MANUAL_CLOCK_START_MS) {
    this.current = startMs;
  }

  /** The time the test last set, in ms since the epoch. */
  now(): number {
    return this.current;
  }

  /** Moves time forward; moving backwards is refused because real clocks used here never do. */
  advance(ms: number): number {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`ManualClock.advance: expected a finite ms >= 0, got ${ms}`);
    }
    this.current += ms;
    return this.current;
  }

  /** Jumps to an absolute time (either direction: tests of clock skew need going back). */
  set(ms: number): void {
    if (!Number.isFinite(ms)) throw new RangeError(`ManualClock.set: expected a finite ms, got ${ms}`);
    this.current = ms;
  }
}
