import type { Clock } from '@multiagents/core';
import { MemoryDefinitionStore } from './memory-definition-store';
import { MemoryMemoStore } from './memory-memo-store';
import { MemoryEventBus, type MemoryEventBusOptions } from './memory-event-bus';
import { MemoryRunStore, type MemoryRunStoreOptions } from './memory-run-store';
import { MemoryTimelineStore } from './memory-timeline-store';
import { MemoryWorkerRegistry } from './memory-worker-registry';

/** Options of {@link createMemoryBackend}. */
export interface MemoryBackendOptions {
  readonly clock?: Clock;
  readonly bus?: Omit<MemoryEventBusOptions, 'clock'>;
  readonly runs?: Omit<MemoryRunStoreOptions, 'bus' | 'clock'>;
}

/** The embedded backend: one process, no servers. */
export interface MemoryBackend {
  readonly bus: MemoryEventBus;
  readonly runs: MemoryRunStore;
  readonly definitions: MemoryDefinitionStore;
  readonly registry: MemoryWorkerRegistry;
  /** Run timelines and the event-monitor's once-only marks. */
  readonly timelines: MemoryTimelineStore;
  /** Records written once per key (agent answers): see MemoStore in core. */
  readonly memo: MemoryMemoStore;
  /** Whether the broker can be reached now: always, in one process. */
  connected(): boolean;
  /** Closes the bus (waiting for handlers in flight), then the stores. */
  close(): Promise<void>;
}

/**
 * The memory bus, run store and definition store, wired so that a transition commits its run, its
 * messages and the acknowledgement of its cause in one synchronous step.
 *
 * @example
 * const backend = createMemoryBackend();
 * const orchestrator = new Orchestrator({ ...backend });
 */
export function createMemoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  const clock = options.clock;
  const bus = new MemoryEventBus({ ...options.bus, ...(clock ? { clock } : {}) });
  const runs = new MemoryRunStore({ ...options.runs, bus, ...(clock ? { clock } : {}) });
  const definitions = new MemoryDefinitionStore();
  const registry = new MemoryWorkerRegistry(clock);
  const timelines = new MemoryTimelineStore(clock);
  const memo = new MemoryMemoStore();
  return {
    bus,
    runs,
    definitions,
    registry,
    timelines,
    memo,
    connected: () => true,
    close: async () => {
      await bus.close();
      await runs.close();
      await definitions.close();
      await memo.close();
    },
  };
}
