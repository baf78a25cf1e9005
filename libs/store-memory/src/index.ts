/**
 * In-process state, timer and definition stores: the embedded backend, and the reference the
 * Redis and NATS stores are checked against (same conformance suites).
 *
 * @example
 * import { MemoryStateStore, MemoryTimerStore, MemoryDefinitionStore } from '@multiagents/store-memory';
 * const store = new MemoryStateStore();
 */

/** Runs: compare-and-set, outbox, idempotent create, paged listing. */
export { MemoryStateStore } from './memory-state-store';
/** Options of MemoryStateStore. */
export type { MemoryStateStoreOptions } from './memory-state-store';
/** Durable-timer semantics (claim with a lease) in memory. */
export { MemoryTimerStore } from './memory-timer-store';
/** Registered workflow definitions, immutable per version. */
export { MemoryDefinitionStore } from './memory-definition-store';
