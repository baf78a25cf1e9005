import { RunState, StepStatus, type Run } from '@multiagents/contracts';
import type { EffectsLedger, OrderInput } from './order-workers';

/**
 * What one finished order run should look like: its final state, context and step statuses, and
 * with a ledger its effects (each applied, undone newest first, each undo after its do).
 */
export function verifyOrderRun(run: Run, order: OrderInput, effects?: EffectsLedger): string[] {
  const problems: string[] = [];
  const tx = run.txId;
  const fail = (what: string): void => void problems.push(`${order.orderId} (${tx}): ${what}`);
  const has = (key: string, expected: boolean): boolean => (effects ? effects.count(key) > 0 : expected);
  const before = (a: string, b: string): boolean =>
    !effects || (effects.position(a) ?? Infinity) < (effects.position(b) ?? -Infinity);
  const ctx = run.context;

  if (!order.failShipping) {
    if (run.state !== RunState.Completed)
      return [`${order.orderId} (${tx}): state ${run.state}, expected completed`];
    if (ctx['reservationId'] !== `res-${order.orderId}`) fail('reservationId missing from context');
    if (ctx['paymentId'] !== `pay-${order.orderId}` || ctx['amount'] !== order.total)
      fail('payment missing from context');
    if (ctx['trackingId'] !== `trk-${order.orderId}`) fail('trackingId missing from context');
    for (const step of ['reserve_inventory', 'charge_payment', 'ship_order']) {
      if (run.steps[step]?.status !== StepStatus.Completed) fail(`${step} is ${run.steps[step]?.status}`);
      if (!has(`${tx}:${step}`, true)) fail(`${step} effect not applied`);
      if (has(`${tx}:${step}:undo`, false)) fail(`${step} undone in a completed run`);
    }
    return problems;
  }
  if (run.state !== RunState.Compensated)
    return [`${order.orderId} (${tx}): state ${run.state}, expected compensated`];
  if (ctx['trackingId'] !== undefined) fail('a failed shipment left a trackingId');
  if (run.steps['ship_order']?.status !== StepStatus.Failed) fail('ship_order did not fail');
  if (has(`${tx}:ship_order`, false)) fail('ship_order effect applied although it failed');
  for (const step of ['reserve_inventory', 'charge_payment']) {
    if (run.steps[step]?.status !== StepStatus.Compensated) fail(`${step} is ${run.steps[step]?.status}`);
    if (!has(`${tx}:${step}:undo`, true)) fail(`${step} not undone`);
    if (!before(`${tx}:${step}`, `${tx}:${step}:undo`)) fail(`${step} undone before it was done`);
  }
  if (!before(`${tx}:charge_payment:undo`, `${tx}:reserve_inventory:undo`))
    fail('undo order is not newest first');
  return problems;
}

/** Every idempotency key an order run's effects may use (for forgetting a checked run). */
export function orderEffectKeys(txId: string): string[] {
  const steps = ['reserve_inventory', 'charge_payment', 'ship_order'];
  return [...steps.map((s) => `${txId}:${s}`), ...steps.map((s) => `${txId}:${s}:undo`)];
}
