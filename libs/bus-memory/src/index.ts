/**
 * The in-process EventBus: Redis Streams consumer-group semantics without a server, for the
 * embedded mode, unit tests and the benchmark.
 *
 * @example
 * import { MemoryEventBus } from '@multiagents/bus-memory';
 * const bus = new MemoryEventBus();
 */

/** The in-process EventBus and its retention defaults. */
export {
  MemoryEventBus,
  DEFAULT_MAX_RETAINED_PER_TOPIC,
  DEFAULT_MAX_DEAD_LETTERS_PER_TOPIC,
} from './memory-event-bus';
/** Options of MemoryEventBus, before and after defaults. */
export type { MemoryEventBusOptions, ResolvedMemoryEventBusOptions } from './memory-event-bus';
