import { isTerminalRunState, type Run } from '@multiagents/contracts';
import type { Orchestrator } from '@multiagents/core';
import type { OrderInput, OrderList } from './order-workers';

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
  readonly orders: OrderList;
  /** Open loop: start requests in flight. Closed loop: whole workflows in flight. */
  readonly concurrency: number;
  readonly closed?: boolean;
  /** Called whenever a run reaches a terminal state. */
  readonly onFinished?: (finished: number) => void;
  /**
   * Called with each order's final run as soon as the observer sees it (the observer must then
   * see each run end once, as the in-process one does). With it nothing is kept per finished run
   * but its latency, and `outcomes` comes back empty: a long benchmark checks each run and lets it
   * go, so memory shows what the engine keeps.
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

/** What {@link runOrders} measured. */
export interface RunOrdersResult {
  /** Each order's latency from start request to terminal state observed, by order index. */
  readonly latenciesMs: Float64Array;
  /** Each order's outcome, in order (empty with `onTerminal`). */
  readonly outcomes: OrderOutcome[];
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
): Promise<RunOrdersResult> {
  const { orders, concurrency, onTerminal } = options;
  const requestedAt = new Float64Array(orders.length);
  const latenciesMs = new Float64Array(orders.length).fill(Number.NaN);
  // Without onTerminal every txId and final run is kept for the outcomes; with it, only the runs
  // in flight are known (by index), and a run that ends before its start returns waits in
  // `endedEarly` until it does.
  const txIds: string[] | undefined = onTerminal ? undefined : new Array<string>(orders.length);
  const indexOf = new Map<string, number>();
  const endedEarly = new Map<string, { readonly at: number; readonly run?: Run }>();
  const finalRuns = new Map<string, Run>();
  const waiters = new Map<string, () => void>();
  let finished = 0;
  let allDone!: () => void;
  const everyRunDone = new Promise<void>((resolve) => (allDone = resolve));
  const isFinished = (txId: string): boolean => {
    const i = indexOf.get(txId);
    return i === undefined ? endedEarly.has(txId) : !Number.isNaN(latenciesMs[i]);
  };
  /** Records run `i`'s end, observed at `at`. */
  const ended = (i: number, txId: string, at: number, run: Run | undefined): void => {
    latenciesMs[i] = at - (requestedAt[i] as number);
    if (onTerminal) {
      indexOf.delete(txId);
      if (run) onTerminal(orders.at(i) as OrderInput, run);
    } else if (run) finalRuns.set(txId, run);
  };
  const unsubscribe = observe((txId, run) => {
    if (isFinished(txId)) return;
    const at = performance.now();
    const i = indexOf.get(txId);
    if (i === undefined) endedEarly.set(txId, run ? { at, run } : { at });
    else ended(i, txId, at, run);
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
      const order = orders.at(i) as OrderInput;
      requestedAt[i] = performance.now();
      const { txId } = await starter.startWorkflow('order_processing', { ...order });
      if (txIds) txIds[i] = txId;
      indexOf.set(txId, i);
      const early = endedEarly.get(txId);
      if (early) {
        endedEarly.delete(txId);
        ended(i, txId, early.at, early.run);
      }
      if (options.closed && Number.isNaN(latenciesMs[i])) {
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
  const outcomes = (txIds ?? []).map((txId, i) => {
    const run = finalRuns.get(txId);
    return {
      order: orders.at(i) as OrderInput,
      txId,
      latencyMs: latenciesMs[i] as number,
      ...(run ? { run } : {}),
    };
  });
  return { latenciesMs, outcomes };
}
