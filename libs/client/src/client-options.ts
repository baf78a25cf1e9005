import type { ChannelCredentials, ChannelOptions } from '@grpc/grpc-js';
import { ValidationError } from '@multiagents/contracts';

/** Retries of idempotent calls that failed with UNAVAILABLE (server down, restarting, draining). */
export interface RetryOptions {
  /** Attempts in all, the first one included; 1 disables retries. */
  readonly maxAttempts?: number;
  /** Delay before the first retry; each next one doubles, up to `maxBackoffMs` (with jitter). */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** Options of {@link connect}. */
export interface ClientOptions {
  /** Channel credentials; plaintext by default (the embedded mode, a local cluster). */
  readonly credentials?: ChannelCredentials;
  /** Default deadline of a unary call, retries included. */
  readonly timeoutMs?: number;
  readonly retry?: RetryOptions;
  /** Largest answer accepted (a page of runs with large contexts can be big). */
  readonly maxReceiveMessageBytes?: number;
  /** Extra grpc-js channel options. */
  readonly channelOptions?: ChannelOptions;
}

/** The resolved form of {@link ClientOptions}. */
export interface ResolvedClientOptions {
  readonly credentials: ChannelCredentials | undefined;
  readonly timeoutMs: number;
  readonly retry: Required<RetryOptions>;
  readonly maxReceiveMessageBytes: number;
  readonly channelOptions: ChannelOptions;
}

/** Defaults of {@link ClientOptions}. */
export const DEFAULT_CLIENT_OPTIONS = Object.freeze({
  timeoutMs: 10_000,
  retry: Object.freeze({ maxAttempts: 4, initialBackoffMs: 100, maxBackoffMs: 2_000 }),
  maxReceiveMessageBytes: 64 * 1024 * 1024,
});

function positiveInteger(value: unknown, name: string, problems: string[]): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) > 0)) {
    problems.push(`${name} must be a positive integer (got ${JSON.stringify(value) ?? typeof value})`);
  }
}

/** Applies the defaults and checks everything, listing every problem at once. */
export function resolveClientOptions(address: unknown, options: ClientOptions): ResolvedClientOptions {
  const problems: string[] = [];
  if (typeof address !== 'string' || address.trim().length === 0) {
    problems.push('address must be a non-empty string such as "127.0.0.1:50051"');
  }
  positiveInteger(options.timeoutMs, 'timeoutMs', problems);
  positiveInteger(options.retry?.maxAttempts, 'retry.maxAttempts', problems);
  positiveInteger(options.retry?.initialBackoffMs, 'retry.initialBackoffMs', problems);
  positiveInteger(options.retry?.maxBackoffMs, 'retry.maxBackoffMs', problems);
  positiveInteger(options.maxReceiveMessageBytes, 'maxReceiveMessageBytes', problems);
  if (problems.length > 0) throw new ValidationError('invalid client options', problems);
  return {
    credentials: options.credentials,
    timeoutMs: options.timeoutMs ?? DEFAULT_CLIENT_OPTIONS.timeoutMs,
    retry: {
      maxAttempts: options.retry?.maxAttempts ?? DEFAULT_CLIENT_OPTIONS.retry.maxAttempts,
      initialBackoffMs: options.retry?.initialBackoffMs ?? DEFAULT_CLIENT_OPTIONS.retry.initialBackoffMs,
      maxBackoffMs: options.retry?.maxBackoffMs ?? DEFAULT_CLIENT_OPTIONS.retry.maxBackoffMs,
    },
    maxReceiveMessageBytes: options.maxReceiveMessageBytes ?? DEFAULT_CLIENT_OPTIONS.maxReceiveMessageBytes,
    channelOptions: options.channelOptions ?? {},
  };
}
