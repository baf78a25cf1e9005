/**
 * State, timer and definition stores on Redis (ioredis 6, Redis ≥ 7.0), with the semantics of
 * `@multiagents/store-memory` and checked by the same conformance suites.
 *
 * Redis Cluster layout. Every key name comes from {@link RedisKeys}; `<p>` is the prefix:
 *
 * | keys | slot (hash tag) | written by |
 * |---|---|---|
 * | `<p>:{<txId>}:run` (hash), `<p>:{<txId>}:outbox` (list) | one slot per run, `{<txId>}` | create, CAS, clear scripts |
 * | `<p>:idem:{<key>}` (string → txId) | one slot per idempotency key | `SET NX GET`, swap script |
 * | `<p>:{runs}:all`, `:state:<state>`, `:wf:<workflowId>` (zsets), `:meta` (hash) | `{runs}` | index scripts |
 * | `<p>:{outbox}:pending` (zset), `:marks` (hash) | `{outbox}` | mark / unmark scripts |
 * | `<p>:{timers}:due` (zset), `:data` (hash) | `{timers}` | timer scripts |
 * | `<p>:{definitions}:ids` (set), `:def:<workflowId>` (hash) | `{definitions}` | definition scripts |
 *
 * Every script touches the keys of one hash tag only, all declared in KEYS. A run's state and its
 * outbox change together in one script in the run's slot; the global indexes and the
 * pending-outbox marker are written around it in the same round trip (superset before, cleanup
 * after) and repaired when read, so a crash between the two loses nothing (RedisStateStore).
 * Terminal runs expire after `terminalRunTtlMs` (default 7 days); index entries of expired runs
 * are dropped lazily, when list() walks over them.
 *
 * The stores accept a standalone ioredis client (`Redis`); the layout above is what a Cluster
 * client would need, but Cluster connections are not wired or tested here.
 *
 * @example
 * import { RedisStateStore, RedisTimerStore, RedisDefinitionStore } from '@multiagents/store-redis';
 * const options = { url: 'redis://127.0.0.1:6379', prefix: 'multiagents' };
 * const store = new RedisStateStore(options);
 * const timers = new RedisTimerStore(options);
 * const definitions = new RedisDefinitionStore(options);
 */

/** Runs: compare-and-set in Lua, outbox, idempotent create, paged listing, retention. */
export {
  RedisStateStore,
  DEFAULT_TERMINAL_RUN_TTL_MS,
  DEFAULT_IDEMPOTENCY_WAIT_MS,
  DEFAULT_IN_FLIGHT_GRACE_MS,
} from './redis-state-store';
/** Options of RedisStateStore. */
export type { RedisStateStoreOptions } from './redis-state-store';
/** Durable timers: a sorted set and one claim script with a lease. */
export { RedisTimerStore } from './redis-timer-store';
/** Options of RedisTimerStore. */
export type { RedisTimerStoreOptions } from './redis-timer-store';
/** Registered workflow definitions, immutable per version. */
export { RedisDefinitionStore } from './redis-definition-store';
/** Options of RedisDefinitionStore. */
export type { RedisDefinitionStoreOptions } from './redis-definition-store';
/** Connection defaults shared by the three stores. */
export {
  DEFAULT_REDIS_URL,
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_RECONNECT_MAX_DELAY_MS,
} from './redis-store-options';
/** Connection options shared by the three stores. */
export type { RedisStoreOptions } from './redis-store-options';
/** The key builder: every key name and hash tag the stores use. */
export { RedisKeys, DEFAULT_REDIS_KEY_PREFIX } from './redis-keys';
