/**
 * `@multiagents/bus-redis`: the EventBus port on Redis Streams and consumer groups.
 *
 * @example
 * import { RedisEventBus } from '@multiagents/bus-redis';
 * const bus = new RedisEventBus({ url: config.redisUrl, prefix: 'multiagents' });
 */

/** The EventBus on Redis Streams. */
export { RedisEventBus } from './redis-event-bus';
/** Its options, their defaults and the resolved form. */
export { DEFAULT_REDIS_BUS_OPTIONS, resolveRedisEventBusOptions } from './redis-event-bus-options';
/** Options of {@link RedisEventBus}. */
export type { RedisEventBusOptions, ResolvedRedisEventBusOptions } from './redis-event-bus-options';
/** The key names (prefix and Redis Cluster hash tags) every bus key is built by. */
export { RedisKeys, DEFAULT_REDIS_KEY_PREFIX } from './redis-keys';
