import { Groups, isTerminalRunState, RunState, Topics, type Run } from '@multiagents/contracts';
import type { EventBus, RunStore } from '@multiagents/core';
import type Redis from 'ioredis';
import { LedgerKeys } from './ledger-workers-keys';

/** One order the test started and the run it got. */
export interface StartedOrder {
  readonly orderId: string;
  readonly total: number;
  readonly failShipping: boolean;
  readonly txId: string;
}

/** What the checker found: counts for the report, problems for the assertion. */
export interface InvariantReport {
  readonly completed: number;
  readonly compensated: number;
  readonly other: number;
  /** Commands delivered more than once (evidence of redelivery after a fault). */
  readonly redeliveredCommands: number;
  /**
   * Runs whose start was acknowledged and whose record the broker no longer has: it forgot its
   * last writes (a kill -9 under production settings). Allowed only where the caller says so.
   */
  readonly lostByBroker: number;
  readonly problems: string[];
}

const WORKERS = [
  'inventory.reserve',
  'inventory.release',
  'payment.charge',
  'payment.refund',
  'shipping.ship',
];

/** Entries delivered and not acknowledged yet: every worker's commands and the results. */
export async function pendingEntries(bus: EventBus): Promise<number> {
  let total = await bus.pendingCount(Topics.results, Groups.orchestrators);
  for (const worker of WORKERS) total += await bus.pendingCount(Topics.command(worker), Groups.workers);
  return total;
}

/**
 * Reads every run until all are terminal (or missing from the store: a broker that forgot them)
 * or `timeoutMs` passes; returns the terminal runs by txId. A read that fails (the broker is
 * restarting) is retried, never taken for a missing run.
 */
export async function waitForTerminalRuns(
  store: RunStore,
  txIds: readonly string[],
  timeoutMs: number,
  onProgress?: (terminal: number) => void,
): Promise<Map<string, Run>> {
  const runs = new Map<string, Run>();
  const deadline = Date.now() + timeoutMs;
  let pending = [...txIds];
  while (pending.length > 0) {
    const next: string[] = [];
    for (let i = 0; i < pending.length; i += 200) {
      const batch = pending.slice(i, i + 200);
      const stored = await Promise.all(
        batch.map((txId) =>
          store.get(txId).then(
            (s) => s ?? null,
            () => undefined,
          ),
        ),
      );
      stored.forEach((s, j) => {
        const txId = batch[j] as string;
        if (s === null) return; // missing: nothing will make it terminal
        if (s && isTerminalRunState(s.run.state)) runs.set(txId, s.run);
        else next.push(txId);
      });
    }
    pending = next;
    onProgress?.(runs.size);
    if (pending.length === 0) break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return runs;
}

/**
 * SPEC §9 invariants 1–3 over real processes: every acknowledged start reached exactly one terminal
 * state (the expected one), effects were applied once per idempotency key in a valid order, and
 * nothing is left pending in any consumer group.
 */
export async function checkInvariants(params: {
  readonly orders: readonly StartedOrder[];
  readonly runs: ReadonlyMap<string, Run>;
  readonly store: RunStore;
  readonly bus: EventBus;
  readonly ledger: Redis;
  /** Runs the broker no longer has are reported, not failures (production settings). */
  readonly allowLost: boolean;
}): Promise<InvariantReport> {
  const { orders, runs, store, bus, ledger } = params;
  let lostByBroker = 0;
  const problems: string[] = [];
  const order = await ledger.lrange(LedgerKeys.order, 0, -1);
  const position = new Map(order.map((key, i) => [key, i]));
  const calls = new Map<string, number>();
  const callKeys = await ledger.keys('ledger:calls:*');
  if (callKeys.length > 0) {
    const values = await ledger.mget(...callKeys);
    callKeys.forEach((k, i) => calls.set(k.slice('ledger:calls:'.length), Number(values[i])));
  }
  let completed = 0;
  let compensated = 0;
  for (const o of orders) {
    const run = runs.get(o.txId);
    const tx = o.txId;
    if (!run) {
      const stored = await store.get(tx);
      if (stored === undefined && params.allowLost) {
        lostByBroker++;
        continue;
      }
      problems.push(`${o.orderId} (${tx}): not terminal (state ${stored?.run.state ?? 'missing'})`);
      continue;
    }
    // Stays terminal: a second read gives the same state.
    const again = await store.get(tx);
    if (again?.run.state !== run.state)
      problems.push(`${tx}: moved from ${run.state} to ${again?.run.state}`);
    const applied = (key: string): boolean => position.has(key);
    const before = (a: string, b: string): boolean =>
      (position.get(a) ?? Infinity) < (position.get(b) ?? -Infinity);
    if (!o.failShipping) {
      if (run.state !== RunState.Completed) {
        problems.push(
          `${o.orderId} (${tx}): ${run.state}, expected completed (${JSON.stringify(run.error)})`,
        );
        continue;
      }
      completed++;
      for (const step of ['reserve_inventory', 'charge_payment', 'ship_order']) {
        if (!applied(`${tx}:${step}`))
          problems.push(`${tx}: ${step} completed but its effect was never applied`);
        if (applied(`${tx}:${step}:undo`)) problems.push(`${tx}: ${step} undone in a completed run`);
      }
      if (run.context['trackingId'] !== `trk-${o.orderId}`) problems.push(`${tx}: context lacks trackingId`);
    } else {
      if (run.state !== RunState.Compensated) {
        problems.push(`${o.orderId} (${tx}): ${run.state}, expected compensated`);
        continue;
      }
      compensated++;
      if (applied(`${tx}:ship_order`)) problems.push(`${tx}: a refused shipment was applied`);
      for (const step of ['reserve_inventory', 'charge_payment']) {
        if (!applied(`${tx}:${step}:undo`)) problems.push(`${tx}: ${step} not undone`);
        if (!before(`${tx}:${step}`, `${tx}:${step}:undo`))
          problems.push(`${tx}: ${step} undone before done`);
      }
      if (!before(`${tx}:charge_payment:undo`, `${tx}:reserve_inventory:undo`)) {
        problems.push(`${tx}: undo order is not newest first`);
      }
    }
  }
  // Nothing left pending in any consumer group (after quiet time: the caller waited for terminal runs).
  for (const worker of WORKERS) {
    const pending = await bus.pendingCount(Topics.command(worker), Groups.workers);
    if (pending !== 0) problems.push(`${pending} commands for ${worker} still pending`);
  }
  const pendingResults = await bus.pendingCount(Topics.results, Groups.orchestrators);
  if (pendingResults !== 0) problems.push(`${pendingResults} results still pending`);
  for (const worker of WORKERS) {
    const dead = await bus.listDeadLetters(Topics.command(worker));
    if (dead.length > 0) problems.push(`${dead.length} dead letters for ${worker}: ${dead[0]?.error}`);
  }
  // No result and no event given up on: a consumer waits a broker's outage out (the event-monitor's
  // timeline writes, the orchestrator's commits) rather than dead-letter what it could not store.
  for (const topic of [Topics.results, Topics.events]) {
    const dead = await bus.listDeadLetters(topic);
    if (dead.length > 0)
      problems.push(`${dead.length} dead letters of ${topic} (group ${dead[0]?.group}): ${dead[0]?.error}`);
  }
  let redeliveredCommands = 0;
  for (const n of calls.values()) if (n > 1) redeliveredCommands++;
  return {
    completed,
    compensated,
    other: orders.length - completed - compensated - lostByBroker,
    redeliveredCommands,
    lostByBroker,
    problems,
  };
}
