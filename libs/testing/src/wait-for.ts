import { toErrorInfo } from '@multiagents/contracts';

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (default {@link DEFAULT_WAIT_FOR_TIMEOUT_MS}). */
  readonly timeoutMs?: number;
  /** Time between two checks (default {@link DEFAULT_WAIT_FOR_INTERVAL_MS}). */
  readonly intervalMs?: number;
  /** Says what was awaited, for the timeout error. */
  readonly description?: string;
}

/**
 * Default bound of {@link waitFor}: generous, because a loaded CI machine is slow, not wrong (a
 * green run never waits that long); below the 30 s test timeout of jest.preset.js, so this error,
 * which names what was awaited, wins.
 */
export const DEFAULT_WAIT_FOR_TIMEOUT_MS = 20_000;
/** Default polling interval of {@link waitFor}. */
export const DEFAULT_WAIT_FOR_INTERVAL_MS = 5;

/**
 * Polls `predicate` until it returns true (a thrown error counts as "not yet"), or throws a clear
 * error after `timeoutMs` naming what was awaited and the predicate's last error. For
 * integration semantics of real brokers; logic with timeouts uses a ManualClock instead.
 *
 * @example
 * await waitFor(() => handled.length === 3, { timeoutMs: 2_000, description: '3 deliveries' });
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  options: WaitForOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_FOR_TIMEOUT_MS;
  const intervalMs = options.intervalMs ?? DEFAULT_WAIT_FOR_INTERVAL_MS;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await predicate()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const what = options.description ? `: ${options.description}` : '';
  const why = lastError === undefined ? '' : ` (last check threw: ${toErrorInfo(lastError).message})`;
  throw new Error(`waitFor timed out after ${timeoutMs} ms${what}${why}`, { cause: lastError });
}
