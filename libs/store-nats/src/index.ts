/**
 * StateStore, TimerStore and DefinitionStore on NATS KV (JetStream, nats-server 2.9 or later):
 * revision-based compare-and-set with the outbox in the same revision, idempotent create,
 * indexed listing, retention of terminal runs, and durable timers that fire once across
 * orchestrators. Each store creates its buckets (`<prefix>-<role>`) on start.
 *
 * @example
 * import { NatsStateStore, NatsTimerStore, NatsDefinitionStore } from '@multiagents/store-nats';
 * const options = { servers: 'nats://127.0.0.1:4222', prefix: 'multiagents' };
 * const store = new NatsStateStore({ ...options, terminalRunTtlMs: 7 * 24 * 3_600_000 });
 * await store.start(); // fails at once on a wrong address or a server without JetStream
 * setInterval(() => void store.purgeExpired(Date.now()), 60_000).unref();
 */

/** Runs: compare-and-set on KV revisions, outbox, idempotent create, listing, retention. */
export { NatsStateStore, DEFAULT_NATS_STATE_STORE_OPTIONS } from './nats-state-store';
/** Options of NatsStateStore. */
export type { NatsStateStoreOptions } from './nats-state-store';
/** Durable timers with leased claims on KV revisions. */
export { NatsTimerStore, DEFAULT_NATS_TIMER_STORE_OPTIONS } from './nats-timer-store';
/** Options of NatsTimerStore. */
export type { NatsTimerStoreOptions } from './nats-timer-store';
/** Registered workflow definitions, immutable per version. */
export { NatsDefinitionStore, DEFAULT_NATS_DEFINITION_STORE_OPTIONS } from './nats-definition-store';
/** Options of NatsDefinitionStore. */
export type { NatsDefinitionStoreOptions } from './nats-definition-store';
/** Connection and namespace options shared by the three stores, and their defaults. */
export { DEFAULT_NATS_STORE_OPTIONS } from './nats-store-options';
/** Connection and namespace options shared by the three stores. */
export type { NatsStoreOptions } from './nats-store-options';
