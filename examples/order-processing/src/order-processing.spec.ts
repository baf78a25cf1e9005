/**
 * The embedded mode end to end, through the public API only: the order saga of SPEC §8 with its
 * real workers, checked run by run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunState } from '@multiagents/contracts';
import { parseDefinition } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import { createOrderWorkers, EffectsLedger, makeOrderBook, makeOrders, seededRandom } from './order-workers';
import { observeOrchestrator, runOrders } from './run-orders';
import { formatTimeline } from './timeline';
import { verifyOrderRun } from './verify-orders';
import { orderWorkflow } from './workflow';

describe('order saga in the embedded mode', () => {
  it('the YAML file and the TypeScript builder define the same workflow', () => {
    const yaml = parseDefinition(readFileSync(join(__dirname, 'workflow.yaml'), 'utf8'));
    expect(yaml).toEqual(orderWorkflow);
  });

  it('completes the good orders and compensates the failing ones, newest step first', async () => {
    const ledger = new EffectsLedger();
    const stack = await startEmbedded({ workers: createOrderWorkers(ledger), definitions: [orderWorkflow] });
    try {
      const orders = makeOrders(300, 0.2, 7);
      const failing = orders.filter((o) => o.failShipping).length;
      expect(failing).toBeGreaterThan(30); // the seeded generator really injects failures
      const { outcomes } = await runOrders(stack.orchestrator, observeOrchestrator(stack.orchestrator), {
        orders,
        concurrency: 20,
        timeoutMs: 20_000,
      });
      const states = new Map<string, number>();
      const problems: string[] = [];
      for (const { order, txId } of outcomes) {
        const run = await stack.orchestrator.getRun(txId);
        states.set(run.state, (states.get(run.state) ?? 0) + 1);
        problems.push(...verifyOrderRun(run, order, ledger));
      }
      expect(problems).toEqual([]);
      expect(states.get(RunState.Completed)).toBe(300 - failing);
      expect(states.get(RunState.Compensated)).toBe(failing);
      // Every key applied exactly once: no duplicate effects in the embedded mode.
      expect(ledger.counts().every((n) => n === 1)).toBe(true);
    } finally {
      await stack.close();
    }
  });

  it('the on-demand order book gives the same seeded orders every time, and nothing out of range', () => {
    const book = makeOrderBook(1_000, 0.1, 42);
    const again = makeOrderBook(1_000, 0.1, 42);
    const other = makeOrderBook(1_000, 0.1, 43);
    const failing = (list: typeof book): number[] =>
      Array.from({ length: list.length }, (_, i) => i).filter((i) => list.at(i)?.failShipping === true);
    expect(book.at(0)).toEqual({ orderId: 'o-1', total: 10 });
    expect(failing(again)).toEqual(failing(book));
    expect(failing(other)).not.toEqual(failing(book));
    expect(failing(book).length).toBeGreaterThan(60);
    expect(failing(book).length).toBeLessThan(140);
    expect([book.at(-1), book.at(1_000), book.at(1.5)]).toEqual([undefined, undefined, undefined]);
    // The orders the bench always used: one draw of the seeded generator per order, in order.
    const random = seededRandom(42);
    const listed = Array.from({ length: 1_000 }, (_, i) => ({
      orderId: `o-${i + 1}`,
      total: 10 + (i % 90),
      ...(random() < 0.1 ? { failShipping: true } : {}),
    }));
    expect(Array.from({ length: 1_000 }, (_, i) => book.at(i))).toEqual(listed);
    expect(makeOrders(1_000, 0.1, 42)).toEqual(listed);
    // A warm-up's orders: other ids, never one of the measured orders'.
    const warm = makeOrderBook(10, 0.1, 43, 'w');
    expect(warm.at(0)).toMatchObject({ orderId: 'w-1' });
    expect(Array.from({ length: 10 }, (_, i) => warm.at(i)?.orderId.startsWith('w-'))).not.toContain(false);
  });

  it('verification catches a run that did not compensate', async () => {
    const ledger = new EffectsLedger();
    const stack = await startEmbedded({ workers: createOrderWorkers(ledger), definitions: [orderWorkflow] });
    try {
      const [order] = makeOrders(1, 0);
      const {
        outcomes: [outcome],
      } = await runOrders(stack.orchestrator, observeOrchestrator(stack.orchestrator), {
        orders: [order!],
        concurrency: 1,
      });
      const run = await stack.orchestrator.getRun(outcome!.txId);
      // The same run judged as if it should have failed shipping: the check must object.
      const problems = verifyOrderRun(run, { ...order!, failShipping: true }, ledger);
      expect(problems).toEqual([expect.stringMatching(/state completed, expected compensated/)]);
    } finally {
      await stack.close();
    }
  });

  it('prints a timeline with the compensations in the order they ran', async () => {
    const stack = await startEmbedded({ workers: createOrderWorkers(), definitions: [orderWorkflow] });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('order_processing', {
        orderId: 'o-9',
        total: 5,
        failShipping: true,
      });
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 });
      const lines = formatTimeline(run);
      expect(lines[0]).toContain('→ compensated');
      const undo = lines.filter((l) => l.includes('undo'));
      expect(undo).toHaveLength(2);
      expect(undo[0]).toContain('1. undo charge_payment');
      expect(undo[1]).toContain('2. undo reserve_inventory');
      expect(lines.join('\n')).toMatch(/ship_order\s+attempt 1\s+failed.*CARRIER_REFUSED/);
    } finally {
      await stack.close();
    }
  });
});
