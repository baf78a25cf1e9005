/**
 * The Redis backend (SPEC §1): the EventBus on Redis Streams and consumer groups, the RunStore
 * whose one Lua script commits a whole transition (run, commands, event, timers and the ack of
 * its cause), and the DefinitionStore — one key layout, partitioned for Redis Cluster.
 *
 * @example
 * import { createRedisBackend } from '@multiagents/redis';
 * const { bus, runs, definitions, close } = createRedisBackend({ url: 'redis://127.0.0.1:6379' });
 */

/** Bus and stores on one connection. */
export { createRedisBackend } from './redis-backend';
/** What createRedisBackend returns. */
export type { RedisBackend } from './redis-backend';
/** Options of the backend and their defaults. */
export { DEFAULT_REDIS_BACKEND_OPTIONS, resolveRedisBackendOptions } from './redis-backend-options';
/** Options before and after defaults; client roles and the client factory. */
export type {
  RedisBackendOptions,
  ResolvedRedisBackendOptions,
  RedisClient,
  RedisClientFactory,
  RedisClientRole,
} from './redis-backend-options';
/** The shared connection setup, and the default client of one role. */
export { RedisConnection, createRedisClient } from './redis-connection';
/** The backend's counters (EventBus.counters()). */
export type { RedisCounters } from './redis-connection';
/** The EventBus on Redis Streams. */
export { RedisEventBus } from './redis-event-bus';
/** A delivery of the Redis bus (what a commit can acknowledge). */
export { RedisDelivery } from './redis-delivery';
/** The RunStore: one script per transition. */
export { RedisRunStore } from './redis-run-store';
/** The DefinitionStore. */
export { RedisDefinitionStore } from './redis-definition-store';
/** The live worker-manager replicas, on Redis. */
export { RedisWorkerRegistry } from './redis-worker-registry';
/** Run timelines and the event-monitor's once-only marks on Redis. */
export { RedisTimelineStore } from './redis-timeline-store';
/** Records written once per key (agent answers): SET NX PX and read back in one MULTI. */
export { RedisMemoStore } from './redis-memo-store';
/** The key builder and partitioning. */
export { RedisKeys, DEFAULT_REDIS_KEY_PREFIX, MAX_PARTITIONS, fnv1a32 } from './redis-keys';
/** One topic's stream in one partition. */
export type { TopicStream } from './redis-keys';
/** Redis Cluster: Cluster clients on seed nodes, the cluster's reachability, P per master, key slots. */
export {
  redisClusterClientFactory,
  inspectRedisCluster,
  clusterPartitions,
  readClusterHashField,
  parseClusterSeeds,
  redisKeySlot,
} from './redis-cluster-client';
/** A cluster node, the Cluster client options, and what inspection found. */
export type {
  RedisClusterNode,
  RedisClusterClientOptions,
  RedisClusterTopology,
} from './redis-cluster-client';
