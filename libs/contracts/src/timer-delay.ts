/**
 * The longest delay a Node timer honours (2³¹−1 ms, about 24.8 days): `setTimeout` and
 * `setInterval` fire a longer one after 1 ms, so every option that ends up as a timer's delay is
 * refused above it.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** True for a whole number of milliseconds a timer can wait: 1 to {@link MAX_TIMER_MS}. */
export function isTimerDelayMs(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MAX_TIMER_MS;
}

/**
 * The longest drain a caller may ask a worker-manager's API for (one hour: past that, a stuck
 * handler should be aborted); a client without a drain timeout of its own waits that long.
 */
export const MAX_DRAIN_TIMEOUT_MS = 3_600_000;
