import { isTimerDelayMs, MAX_TIMER_MS } from '@multiagents/contracts';
import { describeValue } from './describe-value';

/** Circuit breaker settings of one worker in one WorkerManager. */
export interface CircuitBreakerOptions {
  /** Retryable failures in a row (errors, timeouts) that open the circuit. */
  readonly consecutiveFailures?: number;
  /** How long the circuit stays open before one trial attempt is let through (half-open). */
  readonly halfOpenAfterMs?: number;
}

/** How a worker runs inside a WorkerManager; every field is optional (see {@link DEFAULT_WORKER_OPTIONS}). */
export interface WorkerOptions {
  /**
   * Handlers of this worker running at once in one WorkerManager (its slots); more attempts wait
   * for a slot. A handler keeps its slot until its promise settles, even after its attempt timed
   * out or was aborted: one that ignores `ctx.signal` still counts, so the bound holds when a
   * downstream hangs.
   */
  readonly concurrency?: number;
  /**
   * The worker's own ceiling per attempt. The command's `timeoutMs` applies too; the smaller wins.
   * Without either, an attempt has no timeout (its AbortSignal still fires on close or cancel).
   * Cooperative: when it passes, `ctx.signal` fires and the attempt is reported as a retryable
   * `TIMEOUT` at once, but a handler that ignores the signal runs on, holding its slot (see
   * `concurrency`), until it returns or throws. Counted from the handler's start, not from a wait
   * for a slot.
   */
  readonly timeoutMs?: number;
  /** `false` turns the circuit breaker off. */
  readonly circuitBreaker?: CircuitBreakerOptions | false;
}

/** {@link WorkerOptions} after defaults and validation. */
export interface ResolvedWorkerOptions {
  readonly concurrency: number;
  readonly timeoutMs: number | undefined;
  readonly circuitBreaker: Required<CircuitBreakerOptions> | false;
}

/** Defaults applied by `defineWorker`. */
export const DEFAULT_WORKER_OPTIONS: ResolvedWorkerOptions = Object.freeze({
  // Matches the bus's default consumer concurrency, so one worker behaves the same either way.
  concurrency: 16,
  // No ceiling of its own: the step's `timeoutMs` from the workflow definition decides.
  timeoutMs: undefined,
  circuitBreaker: Object.freeze({ consecutiveFailures: 5, halfOpenAfterMs: 10_000 }),
});

const KNOWN_KEYS: ReadonlySet<string> = new Set(['concurrency', 'timeoutMs', 'circuitBreaker']);
const KNOWN_BREAKER_KEYS: ReadonlySet<string> = new Set(['consecutiveFailures', 'halfOpenAfterMs']);

/** True for a whole number above zero (what every count and duration option must be). */
export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

function checkPositiveInteger(value: unknown, label: string, problems: string[]): void {
  if (!isPositiveInteger(value))
    problems.push(`${label} must be a positive integer (got ${describeValue(value)})`);
}

/** A duration a timer waits: a positive integer a timer can honour (see MAX_TIMER_MS). */
export function checkTimerDelay(value: unknown, label: string, problems: string[]): void {
  if (!isPositiveInteger(value)) checkPositiveInteger(value, label, problems);
  else if (!isTimerDelayMs(value))
    problems.push(
      `${label} must be at most ${MAX_TIMER_MS} ms, what a timer can wait (got ${describeValue(value)})`,
    );
}

/**
 * Applies {@link DEFAULT_WORKER_OPTIONS} and appends every problem found to `problems` (so the
 * caller can report them together with its own); returns the resolved options, meaningful only
 * when no problem was added.
 */
export function resolveWorkerOptions(
  options: WorkerOptions | undefined,
  problems: string[],
): ResolvedWorkerOptions {
  if (options === undefined) return DEFAULT_WORKER_OPTIONS;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    problems.push(`options must be an object (got ${describeValue(options)})`);
    return DEFAULT_WORKER_OPTIONS;
  }
  // Options often come from configuration files: a misspelt key would otherwise be silently ignored.
  for (const key of Object.keys(options)) {
    if (!KNOWN_KEYS.has(key)) problems.push(`unknown option "${key}"`);
  }

  const concurrency = options.concurrency ?? DEFAULT_WORKER_OPTIONS.concurrency;
  checkPositiveInteger(concurrency, 'concurrency', problems);

  const timeoutMs = options.timeoutMs ?? DEFAULT_WORKER_OPTIONS.timeoutMs;
  if (timeoutMs !== undefined) checkTimerDelay(timeoutMs, 'timeoutMs', problems);

  let circuitBreaker: ResolvedWorkerOptions['circuitBreaker'] = DEFAULT_WORKER_OPTIONS.circuitBreaker;
  const breaker: unknown = options.circuitBreaker;
  if (breaker === false) {
    circuitBreaker = false;
  } else if (breaker !== undefined) {
    if (typeof breaker !== 'object' || breaker === null || Array.isArray(breaker)) {
      problems.push(`circuitBreaker must be an object or false (got ${describeValue(breaker)})`);
    } else {
      for (const key of Object.keys(breaker)) {
        if (!KNOWN_BREAKER_KEYS.has(key)) problems.push(`unknown option "circuitBreaker.${key}"`);
      }
      const given = breaker as CircuitBreakerOptions;
      const defaults = DEFAULT_WORKER_OPTIONS.circuitBreaker as Required<CircuitBreakerOptions>;
      circuitBreaker = {
        consecutiveFailures: given.consecutiveFailures ?? defaults.consecutiveFailures,
        halfOpenAfterMs: given.halfOpenAfterMs ?? defaults.halfOpenAfterMs,
      };
      checkPositiveInteger(
        circuitBreaker.consecutiveFailures,
        'circuitBreaker.consecutiveFailures',
        problems,
      );
      checkTimerDelay(circuitBreaker.halfOpenAfterMs, 'circuitBreaker.halfOpenAfterMs', problems);
    }
  }

  return { concurrency, timeoutMs, circuitBreaker };
}
