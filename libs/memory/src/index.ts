/**
 * The memory backend: the embedded mode's bus and stores, in one process with no servers, and the
 * reference semantics the Redis and NATS backends are checked against (same conformance suites).
 *
 * @example
 * import { createMemoryBackend } from '@multiagents/memory';
 * const { bus, runs, definitions } = createMemoryBackend();
 */

/** The bus, run store and definition store wired together. */
export { createMemoryBackend } from './memory-backend';
/** Options of createMemoryBackend, and what it returns. */
export type { MemoryBackendOptions, MemoryBackend } from './memory-backend';
/** The in-process EventBus and its retention defaults. */
export {
  MemoryEventBus,
  DEFAULT_MAX_RETAINED_PER_TOPIC,
  DEFAULT_MAX_DEAD_LETTERS_PER_TOPIC,
} from './memory-event-bus';
/** Options of MemoryEventBus, before and after defaults. */
export type { MemoryEventBusOptions, ResolvedMemoryEventBusOptions } from './memory-event-bus';
/** Runs, timers and atomic transitions in memory, with retention of finished runs. */
export {
  MemoryRunStore,
  DEFAULT_MAX_ACTIVE_RUNS,
  DEFAULT_RETAIN_FINISHED_RUNS,
  DEFAULT_RETAIN_FINISHED_MS,
} from './memory-run-store';
/** Options of MemoryRunStore. */
export type { MemoryRunStoreOptions } from './memory-run-store';
/** The live worker-manager replicas of one process. */
export { MemoryWorkerRegistry } from './memory-worker-registry';
/** Run timelines and once-only marks of one process (the event-monitor's store). */
export { MemoryTimelineStore } from './memory-timeline-store';
/** Registered workflow definitions, immutable per version. */
export { MemoryDefinitionStore } from './memory-definition-store';
/** Records written once per key (the memo of agent answers) in this process's memory. */
export { MemoryMemoStore, DEFAULT_MEMORY_MEMO_MAX_ENTRIES } from './memory-memo-store';
/** Options of MemoryMemoStore. */
export type { MemoryMemoStoreOptions } from './memory-memo-store';
