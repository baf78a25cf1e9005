import type { WorkflowDefinition } from '@multiagents/contracts';
import { MemoryEventBus } from '@multiagents/bus-memory';
import {
  Orchestrator,
  systemClock,
  silentLogger,
  type Clock,
  type Logger,
  type OrchestratorOptions,
} from '@multiagents/core';
import { MemoryDefinitionStore, MemoryStateStore, MemoryTimerStore } from '@multiagents/store-memory';
import { WorkerManager, type WorkerDefinition, type WorkerManagerOptions } from '@multiagents/worker-sdk';

/** Options of {@link startEmbedded}. */
export interface EmbeddedOptions {
  /** The workers this process hosts. */
  readonly workers: readonly WorkerDefinition<never, unknown>[];
  /** Definitions registered at start. */
  readonly definitions?: readonly WorkflowDefinition[];
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Orchestrator settings (timer polling, limits…); the stores and bus are the embedded ones. */
  readonly orchestrator?: Partial<
    Omit<OrchestratorOptions, 'bus' | 'store' | 'timers' | 'definitions' | 'clock' | 'logger'>
  >;
  /** Worker-manager settings. */
  readonly workerManager?: Partial<Omit<WorkerManagerOptions, 'bus' | 'workers' | 'clock' | 'logger'>>;
}

/** A running single-process stack: orchestrator, worker-manager, in-memory bus and stores. */
export interface EmbeddedStack {
  readonly orchestrator: Orchestrator;
  readonly workerManager: WorkerManager;
  readonly bus: MemoryEventBus;
  readonly store: MemoryStateStore;
  readonly timers: MemoryTimerStore;
  readonly definitions: MemoryDefinitionStore;
  /** Drains the worker-manager, then stops the orchestrator and the bus. */
  close(): Promise<void>;
}

/**
 * The embedded mode: the whole engine in one process with no servers — for demos, tests and
 * programs that want sagas without infrastructure. Same engine and semantics as the Redis and
 * NATS backends (the memory bus redelivers, dead-letters and counts deliveries like they do);
 * state lives only as long as the process.
 *
 * @example
 * const stack = await startEmbedded({ workers, definitions: [orderWorkflow] });
 * const { txId } = await stack.orchestrator.startWorkflow('order_processing', { orderId: 'o-1' });
 * const { state } = await stack.orchestrator.waitForTerminal(txId); // completed or compensated
 * await stack.close();
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedStack> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const bus = new MemoryEventBus();
  const store = new MemoryStateStore({ clock });
  const timers = new MemoryTimerStore();
  const definitions = new MemoryDefinitionStore();
  const workerNames = new Set(options.workers.map((w) => w.name));
  const orchestrator = new Orchestrator({
    knownWorkers: () => workerNames,
    ...options.orchestrator,
    bus,
    store,
    timers,
    definitions,
    clock,
    logger,
  });
  const workerManager = new WorkerManager({
    ...options.workerManager,
    bus,
    workers: options.workers,
    clock,
    logger,
  });
  for (const definition of options.definitions ?? []) await orchestrator.registerWorkflow(definition);
  await workerManager.start();
  await orchestrator.start();
  return {
    orchestrator,
    workerManager,
    bus,
    store,
    timers,
    definitions,
    async close() {
      await workerManager.close();
      await orchestrator.close();
      await bus.close();
      await timers.close();
      await store.close();
      await definitions.close();
    },
  };
}
