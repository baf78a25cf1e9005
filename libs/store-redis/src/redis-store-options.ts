import { ValidationError } from '@multiagents/contracts';
import { silentLogger, type Logger } from '@multiagents/core';
import type { Redis, RedisOptions } from 'ioredis';
import { DEFAULT_REDIS_KEY_PREFIX, RedisKeys } from './redis-keys';

/** Where the stores connect when neither `url` nor `redis` nor `client` is given. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** Default bound on one store call: past it the call rejects with TIMEOUT (Redis down or stuck). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** Default cap of the reconnect backoff (50 ms doubling, plus jitter, up to this). */
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 2_000;

/** Connection options shared by the Redis stores. */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (default {@link DEFAULT_REDIS_URL}). */
  readonly url?: string;
  /** More ioredis options (TLS, password, …); with `url`, the URL's parts win. */
  readonly redis?: RedisOptions;
  /**
   * A connection to use instead of opening one; `close()` leaves it open, and its owner handles
   * its `error` events. Give either this or `url`/`redis`.
   */
  readonly client?: Redis;
  /** Namespace of every key (default `multiagents`; SPEC §7 `MULTIAGENTS_PREFIX`). */
  readonly prefix?: string;
  /** Bound on one store call, in ms (default {@link DEFAULT_COMMAND_TIMEOUT_MS}). */
  readonly commandTimeoutMs?: number;
  /** Cap of the reconnect backoff, in ms (default {@link DEFAULT_RECONNECT_MAX_DELAY_MS}). */
  readonly reconnectMaxDelayMs?: number;
  /** Connection trouble and failed background repairs are logged here (default: silent). */
  readonly logger?: Logger;
}

/** {@link RedisStoreOptions} after defaults. */
export interface ResolvedRedisStoreOptions {
  readonly url: string | undefined;
  readonly redis: RedisOptions | undefined;
  readonly client: Redis | undefined;
  readonly prefix: string;
  readonly commandTimeoutMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly logger: Logger;
}

/** True for a finite number > 0. */
export function isPositive(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

/**
 * Applies defaults to the shared connection options and validates them together with the
 * store-specific `problems` its caller found, throwing one `ValidationError` listing all of them.
 */
export function resolveRedisStoreOptions(
  what: string,
  options: RedisStoreOptions,
  problems: string[] = [],
): ResolvedRedisStoreOptions {
  const all = [...RedisKeys.prefixProblems(options.prefix ?? DEFAULT_REDIS_KEY_PREFIX), ...problems];
  if (options.url !== undefined && !/^rediss?:\/\/./.test(options.url)) {
    all.push('url must start with redis:// or rediss://');
  }
  if (options.client !== undefined && (options.url !== undefined || options.redis !== undefined)) {
    all.push('give either client or url/redis, not both');
  }
  if (options.commandTimeoutMs !== undefined && !isPositive(options.commandTimeoutMs)) {
    all.push('commandTimeoutMs must be a number > 0');
  }
  if (options.reconnectMaxDelayMs !== undefined && !isPositive(options.reconnectMaxDelayMs)) {
    all.push('reconnectMaxDelayMs must be a number > 0');
  }
  if (all.length > 0) throw new ValidationError(`${what} options`, all);
  return {
    url:
      options.url ??
      (options.redis === undefined && options.client === undefined ? DEFAULT_REDIS_URL : undefined),
    redis: options.redis,
    client: options.client,
    prefix: options.prefix ?? DEFAULT_REDIS_KEY_PREFIX,
    commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
    reconnectMaxDelayMs: options.reconnectMaxDelayMs ?? DEFAULT_RECONNECT_MAX_DELAY_MS,
    logger: options.logger ?? silentLogger,
  };
}
