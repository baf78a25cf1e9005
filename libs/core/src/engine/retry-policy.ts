import type { RetryPolicy } from '@multiagents/contracts';

/** A retry policy with every field set. */
export interface ResolvedRetryPolicy {
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly backoffCoefficient: number;
  readonly maxDelayMs: number;
  readonly nonRetryableErrors: readonly string[];
}

/** Retry defaults for steps. */
export const DEFAULT_RETRY_POLICY: ResolvedRetryPolicy = {
  maxAttempts: 3,
  initialDelayMs: 100,
  backoffCoefficient: 2,
  maxDelayMs: 10_000,
  nonRetryableErrors: [],
};

/** Retry defaults for compensations: undoing matters more, so they try harder. */
export const DEFAULT_COMPENSATION_RETRY_POLICY: ResolvedRetryPolicy = {
  maxAttempts: 5,
  initialDelayMs: 200,
  backoffCoefficient: 2,
  maxDelayMs: 30_000,
  nonRetryableErrors: [],
};

/** Layers a step's policy over the workflow's defaults over the built-in ones. */
export function resolveRetryPolicy(
  base: ResolvedRetryPolicy,
  ...layers: (RetryPolicy | undefined)[]
): ResolvedRetryPolicy {
  const out: Record<string, unknown> = { ...base };
  for (const layer of layers) {
    if (!layer) continue;
    // A field set to `undefined` (easy to write in TypeScript) means "not set", not "no value":
    // spreading it would wipe the default and turn every delay into NaN.
    for (const [key, value] of Object.entries(layer)) if (value !== undefined) out[key] = value;
  }
  return out as unknown as ResolvedRetryPolicy;
}

/** Delay before attempt `failedAttempt + 1`: exponential, capped. */
export function backoffDelayMs(policy: ResolvedRetryPolicy, failedAttempt: number): number {
  const raw = policy.initialDelayMs * Math.pow(policy.backoffCoefficient, Math.max(0, failedAttempt - 1));
  return Math.min(policy.maxDelayMs, Math.round(raw));
}
