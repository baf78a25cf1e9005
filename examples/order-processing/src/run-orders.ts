import { isTerminalRunState, type Run } from '@multiagents/contracts';
import type { Orchestrator } from '@multiagents/core';
import type { OrderInput } from './order-workers';

/**
 * Tells when runs become terminal: calls `listener(txId, run?)` once per run (with the final run
 * when the observer has it); returns an unsubscribe.
 */
export type TerminalObserver = (listener: (txId: string, run?: Run) => void) => () => void;

/** Observes terminal runs through the orchestrator in this process (the embedded mode). */
export function observeOrchestrator(orchestrator: Orchestrator): TerminalObserver {
  return (listener) =>
    orchestrator.onRunChanged((run: Run) => {
      if (isTerminalRunState(run.state)) listener(run.txId, run);
    });
}

/** What starts runs: an Orchestrator, or anything with the same startWorkflow. */
export type RunStarter = Pick<Orchestrator, 'startWorkflow'>;

/** Options of {@link runOrders}. */
export interface RunOrdersOptions {
  readonly orders: readonly OrderInput[];
  /** Open loop: start requests in flight. Closed loop: whole workflows in flight. */
  readonly concurrency: number;
  readonly closed?: boolean;
  /** Called whenever a run reaches a terminal state. */
  readonly onFinished?: (finished: number) => void;
  /**
   * Called with each order's final run as soon as the observer sees it (when it has the run).
   * With it, outcomes do not keep the runs: a long benchmark checks each run and lets it go.
   */
  readonly onTerminal?: (order: OrderInput, run: Run) => void;
  /** Give up after this long. */
  readonly timeoutMs?: number;
}

/** One order's outcome, with its latency from start request to terminal state observed. */
export interface OrderOutcome {
  readonly order: OrderInput;
  readonly txId: string;
  readonly latencyMs: number;
  /** The final run, when the observer saw it (finished runs may leave the process later). */
  readonly run?: Run;
}

/**
 * Starts every order through the orchestrator and waits until each run is terminal. The open
 * loop keeps at most `concurrency` start requests in flight (throughput); the closed loop keeps at
 * most `concurrency` whole workflows in flight (latency).
 */
export async function runOrders(
  starter: RunStarter,
  observe: TerminalObserver,
  options: RunOrdersOptions,
): Promise<OrderOutcome[]> {
  const { orders, concurrency } = options;
  const requestedAt = new Array<number>(orders.length);
  const txIds = new Array<string>(orders.length);
  const finishedAt = new Map<string, number>();
  const finalRuns = new Map<string, Run>();
  const waiters = new Map<string, () => void>();
  let finished = 0;
  let allDone!: () => void;
  const everyRunDone = new Promise<void>((resolve) => (allDone = resolve));
  const orderOf = new Map<string, OrderInput>();
  const unsubscribe = observe((txId, run) => {
    if (finishedAt.has(txId)) return;
    finishedAt.set(txId, performance.now());
    if (run && options.onTerminal) {
      // A run can end before its start call returns its txId here: checked once it does.
      const order = orderOf.get(txId);
      if (order) {
        orderOf.delete(txId);
        options.onTerminal(order, run);
      } else finalRuns.set(txId, run);
    } else if (run) finalRuns.set(txId, run);
    finished++;
    options.onFinished?.(finished);
    waiters.get(txId)?.();
    if (finished === orders.length) allDone();
  });
  const timeout = new Promise<never>((_, reject) => {
    const t = setTimeout(
      () =>
        reject(new Error(`only ${finished} of ${orders.length} runs finished in ${options.timeoutMs} ms`)),
      options.timeoutMs ?? 600_000,
    );
    t.unref();
    void everyRunDone.then(() => clearTimeout(t));
  });

  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < orders.length) {
      const i = next++;
      const order = orders[i] as OrderInput;
      requestedAt[i] = performance.now();
      const { txId } = await starter.startWorkflow('order_processing', { ...order });
      txIds[i] = txId;
      if (options.onTerminal) {
        const early = finalRuns.get(txId);
        if (early) {
          finalRuns.delete(txId);
          options.onTerminal(order, early);
        } else orderOf.set(txId, order);
      }
      if (options.closed && !finishedAt.has(txId)) {
        await new Promise<void>((resolve) => waiters.set(txId, resolve));
        waiters.delete(txId);
      }
    }
  };
  try {
    await Promise.race([Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane)), timeout]);
    if (orders.length > 0) await Promise.race([everyRunDone, timeout]);
  } finally {
    unsubscribe();
  }
  return orders.map((order, i) => {
    const txId = txIds[i] as string;
    const run = finalRuns.get(txId);
    return {
      order,
      txId,
      latencyMs: (finishedAt.get(txId) ?? NaN) - (requestedAt[i] as number),
      ...(run ? { run } : {}),
    };
  });
}
