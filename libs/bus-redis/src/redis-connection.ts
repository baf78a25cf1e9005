import type { Logger } from '@multiagents/core';
import { Redis, type RedisOptions } from 'ioredis';
import type { ResolvedRedisEventBusOptions } from './redis-event-bus-options';

/** What a connection is used for; decides how it waits when Redis is away. */
export type ConnectionRole = 'commands' | 'reader';

/** Log at most one connection error per connection in this window (reconnects retry every ≤ 2 s). */
const ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Opens one ioredis connection for the bus. Both roles reconnect forever with capped exponential
 * backoff (no crash loop while Redis is down or restarting).
 *
 * - `commands` (publish, acks, scripts, queries): a command Redis has not answered within
 *   `commandTimeoutMs` is rejected, so callers get a clear error instead of waiting forever;
 *   `maxRetriesPerRequest` rejects what queued up offline after that many reconnect attempts.
 * - `reader` (one per subscription: blocking XREADGROUP, reclaim passes): waits for Redis as long
 *   as it takes; ioredis resends the blocked read after a reconnect.
 */
export function createRedisConnection(
  options: ResolvedRedisEventBusOptions,
  role: ConnectionRole,
  logger: Logger,
): Redis {
  const maxDelay = options.reconnectMaxDelayMs;
  const redisOptions: RedisOptions = {
    ...options.client,
    retryStrategy:
      options.client?.retryStrategy ??
      ((times: number) =>
        Math.min(50 * 2 ** Math.min(times - 1, 20), maxDelay) + Math.floor(Math.random() * 50)),
    ...(role === 'commands'
      ? { commandTimeout: options.commandTimeoutMs, maxRetriesPerRequest: options.maxRetriesPerRequest }
      : { commandTimeout: undefined, maxRetriesPerRequest: null }),
  };
  const connection =
    options.url === undefined ? new Redis(redisOptions) : new Redis(options.url, redisOptions);
  let lastLoggedAt = 0;
  // Without a listener ioredis prints every failed reconnect to stderr.
  connection.on('error', (err: Error) => {
    const now = Date.now();
    if (now - lastLoggedAt < ERROR_LOG_INTERVAL_MS) return;
    lastLoggedAt = now;
    logger.warn({ role, err: err.message }, 'redis connection error (reconnecting)');
  });
  connection.on('ready', () => {
    if (lastLoggedAt !== 0) logger.info({ role }, 'redis connection ready again');
    lastLoggedAt = 0;
  });
  return connection;
}
