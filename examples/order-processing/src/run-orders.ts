import { isTerminalRunState, type Run } from '@multiagents/contracts';
import type { Orchestrator } from '@multiagents/core';
import type { OrderInput } from './order-workers';

/** Tells when runs become terminal: calls `listener(txId)` once per run; returns an unsubscribe. */
export type TerminalObserver = (listener: (txId: string) => void) => () => void;

/** Observes terminal runs through the orchestrator in this process (the embedded mode). */
export function observeOrchestrator(orchestrator: Orchestrator): TerminalObserver {
  return (listener) =>
    orchestrator.onRunChanged((run: Run) => {
      if (isTerminalRunState(run.state)) listener(run.txId);
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
  /** Give up after this long. */
  readonly timeoutMs?: number;
}

/** One order's outcome, with its latency from start request to terminal state observed. */
export interface OrderOutcome {
  readonly order: OrderInput;
  readonly txId: string;
  readonly latencyMs: number;
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
  const waiters = new Map<string, () => void>();
  let finished = 0;
  let allDone!: () => void;
  const everyRunDone = new Promise<void>((resolve) => (allDone = resolve));
  const unsubscribe = observe((txId) => {
    if (finishedAt.has(txId)) return;
    finishedAt.set(txId, performance.now());
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
    return { order, txId, latencyMs: (finishedAt.get(txId) ?? NaN) - (requestedAt[i] as number) };
  });
}
