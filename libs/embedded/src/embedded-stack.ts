import type { WorkflowDefinition } from '@multiagents/contracts';
import {
  Orchestrator,
  systemClock,
  silentLogger,
  type Clock,
  type Logger,
  type OrchestratorOptions,
} from '@multiagents/core';
import {
  createMemoryBackend,
  type MemoryDefinitionStore,
  type MemoryEventBus,
  type MemoryMemoStore,
  type MemoryRunStore,
  type MemoryRunStoreOptions,
} from '@multiagents/memory';
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
    Omit<OrchestratorOptions, 'bus' | 'runs' | 'definitions' | 'clock' | 'logger'>
  >;
  /**
   * Retention of finished runs (default: the newest 10,000, up to an hour old), and the runs in
   * progress beyond which `startWorkflow` waits for one to finish or park (default
   * {@link defaultMaxActiveRuns}: twice the hosted workers' slots, at least 64).
   */
  readonly runs?: Pick<MemoryRunStoreOptions, 'retainFinishedRuns' | 'retainFinishedMs' | 'maxActiveRuns'>;
  /** Worker-manager settings. */
  readonly workerManager?: Partial<Omit<WorkerManagerOptions, 'bus' | 'workers' | 'clock' | 'logger'>>;
  /**
   * The orchestrator hands each command straight to the worker-manager when the worker has a
   * free slot, and takes its result back the same way, instead of both crossing the bus
   * (default true; see `OrchestratorOptions.localWorkers`). False sends every command through
   * the in-process bus, as a separate worker-manager would get it.
   */
  readonly eagerDispatch?: boolean;
}

/** A running single-process stack: orchestrator, worker-manager, in-memory bus and stores. */
export interface EmbeddedStack {
  readonly orchestrator: Orchestrator;
  readonly workerManager: WorkerManager;
  readonly bus: MemoryEventBus;
  readonly runs: MemoryRunStore;
  readonly definitions: MemoryDefinitionStore;
  /** Records written once per key (an agent's memo), in this process's memory. */
  readonly memo: MemoryMemoStore;
  /** Drains the worker-manager, then stops the orchestrator and the bus. */
  close(): Promise<void>;
}

/** Runs in progress the embedded mode lets in by default per slot of the workers it hosts. */
export const ACTIVE_RUNS_PER_WORKER_SLOT = 2;
/** The fewest runs in progress the embedded mode lets in by default, however few slots. */
export const MIN_DEFAULT_ACTIVE_RUNS = 64;

/**
 * The default bound on runs in progress in one process: twice the slots of the workers it hosts
 * (the sum of their `concurrency`), at least {@link MIN_DEFAULT_ACTIVE_RUNS}. Every worker is
 * here, so that many keep every slot busy with a run behind each; a run let in beyond them only
 * waits in memory, where it outlives the young generation and is copied by each scavenge. The
 * order saga's five workers of 16 slots get 160: against the store's fixed 1,000 an open-loop
 * benchmark ran 6% faster in a quarter less memory (docs/benchmarks.md).
 */
export function defaultMaxActiveRuns(workers: readonly WorkerDefinition<never, unknown>[]): number {
  let slots = 0;
  for (const worker of workers) slots += worker.options.concurrency;
  return Math.max(MIN_DEFAULT_ACTIVE_RUNS, ACTIVE_RUNS_PER_WORKER_SLOT * slots);
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
  const backend = createMemoryBackend({
    clock,
    runs: {
      ...options.runs,
      maxActiveRuns: options.runs?.maxActiveRuns ?? defaultMaxActiveRuns(options.workers),
    },
  });
  const { bus, runs, definitions, registry } = backend;
  const workerNames = new Set(options.workers.map((w) => w.name));
  const workerManager = new WorkerManager({
    ...options.workerManager,
    bus,
    workers: options.workers,
    registry,
    clock,
    logger,
  });
  const orchestrator = new Orchestrator({
    knownWorkers: () => workerNames,
    // Nothing in one process consumes lifecycle events unless asked (a monitor turns them on):
    // published to nobody they would only fill the bus's retention.
    lifecycleEvents: false,
    ...options.orchestrator,
    bus,
    runs,
    definitions,
    registry,
    clock,
    logger,
    ...(options.eagerDispatch === false ? {} : { localWorkers: workerManager }),
  });
  for (const definition of options.definitions ?? []) await orchestrator.registerWorkflow(definition);
  await workerManager.start();
  await orchestrator.start();
  return {
    orchestrator,
    workerManager,
    bus,
    runs,
    definitions,
    memo: backend.memo,
    async close() {
      await workerManager.close();
      await orchestrator.close();
      await backend.close();
    },
  };
}
