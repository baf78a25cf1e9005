import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_SUBSCRIBE_OPTIONS, type SubscribeOptions } from './event-bus';

/** {@link SubscribeOptions} after the port's defaults. */
export interface ResolvedSubscribeOptions {
  readonly group: string;
  readonly consumer: string;
  readonly concurrency: number;
  readonly maxDeliveries: number;
  readonly visibilityTimeoutMs: number;
  readonly retryDelayMs: number;
  readonly startFrom: 'earliest' | 'latest';
  readonly batchDelayMs: number;
}

/**
 * Applies {@link DEFAULT_SUBSCRIBE_OPTIONS} and checks everything, listing every problem in one
 * ValidationError. Every EventBus adapter resolves its subscriptions here, so all accept the same
 * options. Durations are whole milliseconds (JetStream takes nanoseconds, Redis idle times ms).
 */
export function resolveSubscribeOptions(options: SubscribeOptions): ResolvedSubscribeOptions {
  const resolved: ResolvedSubscribeOptions = {
    group: options.group,
    consumer: options.consumer,
    concurrency: options.concurrency ?? DEFAULT_SUBSCRIBE_OPTIONS.concurrency,
    maxDeliveries: options.maxDeliveries ?? DEFAULT_SUBSCRIBE_OPTIONS.maxDeliveries,
    visibilityTimeoutMs: options.visibilityTimeoutMs ?? DEFAULT_SUBSCRIBE_OPTIONS.visibilityTimeoutMs,
    retryDelayMs: options.retryDelayMs ?? DEFAULT_SUBSCRIBE_OPTIONS.retryDelayMs,
    startFrom: options.startFrom ?? DEFAULT_SUBSCRIBE_OPTIONS.startFrom,
    batchDelayMs: options.batchDelayMs ?? DEFAULT_SUBSCRIBE_OPTIONS.batchDelayMs,
  };
  const problems: string[] = [];
  if (typeof resolved.group !== 'string' || resolved.group.length === 0) {
    problems.push('group must be a non-empty string');
  }
  if (typeof resolved.consumer !== 'string' || resolved.consumer.length === 0) {
    problems.push('consumer must be a non-empty string');
  }
  if (!Number.isInteger(resolved.concurrency) || resolved.concurrency < 1) {
    problems.push('concurrency must be an integer >= 1');
  }
  if (!Number.isInteger(resolved.maxDeliveries) || resolved.maxDeliveries < 1) {
    problems.push('maxDeliveries must be an integer >= 1');
  }
  if (!Number.isInteger(resolved.visibilityTimeoutMs) || resolved.visibilityTimeoutMs <= 0) {
    problems.push('visibilityTimeoutMs must be an integer > 0');
  }
  if (!Number.isInteger(resolved.retryDelayMs) || resolved.retryDelayMs < 0) {
    problems.push('retryDelayMs must be an integer >= 0');
  }
  if (resolved.startFrom !== 'earliest' && resolved.startFrom !== 'latest') {
    problems.push("startFrom must be 'earliest' or 'latest'");
  }
  if (
    !Number.isInteger(resolved.batchDelayMs) ||
    resolved.batchDelayMs < 0 ||
    resolved.batchDelayMs > 60_000
  ) {
    problems.push('batchDelayMs must be an integer from 0 to 60000');
  }
  if (problems.length > 0) throw new ValidationError('subscribe options', problems);
  return resolved;
}
