import {
  EventType,
  NonRetryableError,
  Topics,
  toErrorInfo,
  type Envelope,
  type StepCommandPayload,
  type StepResultPayload,
} from '@multiagents/contracts';
import { WorkflowBuilder, type EventBus, type Subscription } from '@multiagents/core';

/** The order saga of SPEC §8 (the same definition as examples/order-processing). */
export const orderWorkflow = new WorkflowBuilder('order_processing')
  .description('Reserve stock, charge the card, ship; undo on failure')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('charge_payment', 'payment.charge', { compensation: 'payment.refund', retry: { maxAttempts: 3 } })
  .step('ship_order', 'shipping.ship', { when: 'context.total > 0', timeoutMs: 30_000 })
  .build();

/** One order's input; `failShipping` makes ship_order fail (non-retryable), so the run compensates. */
export interface OrderInput {
  readonly orderId: string;
  readonly total: number;
  readonly failShipping: boolean;
}

const WORKERS: Record<string, (input: OrderInput) => unknown> = {
  'inventory.reserve': (input) => ({ reservationId: `res-${input.orderId}` }),
  'inventory.release': () => ({ released: true }),
  'payment.charge': (input) => ({ paymentId: `pay-${input.orderId}`, amount: input.total }),
  'payment.refund': () => ({ refunded: true }),
  'shipping.ship': (input) => {
    if (input.failShipping) throw new NonRetryableError('address rejected');
    return { trackingId: `trk-${input.orderId}` };
  },
};

/**
 * The five order workers as a worker-manager runs them (no I/O): consume `commands.<worker>` in
 * group `workers`, publish a `step.result`, and return (which acknowledges the command; the Redis
 * bus does it with the result). Returns the subscriptions and a count of commands handled.
 */
export async function startOrderWorkers(
  bus: EventBus,
  concurrency = 64,
): Promise<{ subscriptions: Subscription[]; handled: () => number }> {
  let handled = 0;
  const subscriptions: Subscription[] = [];
  for (const [worker, run] of Object.entries(WORKERS)) {
    subscriptions.push(
      await bus.subscribe(
        Topics.command(worker),
        { group: 'workers', consumer: `w-${worker}`, concurrency },
        async (d) => {
          const command = d.envelope as Envelope<StepCommandPayload>;
          const { commandId } = command.payload;
          let payload: StepResultPayload;
          try {
            payload = { commandId, worker, ok: true, output: run(command.payload.input as OrderInput) };
          } catch (err) {
            payload = { commandId, worker, ok: false, error: toErrorInfo(err) };
          }
          handled += 1;
          await bus.publish(Topics.results, [
            {
              id: `${commandId}:result`,
              type: EventType.StepResult,
              txId: command.txId,
              workflowId: command.workflowId,
              ...(command.step === undefined ? {} : { step: command.step }),
              ...(command.attempt === undefined ? {} : { attempt: command.attempt }),
              time: Date.now(),
              headers: command.headers,
              payload,
            },
          ]);
        },
      ),
    );
  }
  return { subscriptions, handled: () => handled };
}

/** `n` orders, a seeded fraction `failRate` of which fail shipping. */
export function orders(n: number, failRate: number, seed = 42): OrderInput[] {
  let state = seed >>> 0;
  const random = (): number => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
  return Array.from({ length: n }, (_, i) => ({
    orderId: `o-${i}`,
    total: 10 + (i % 90),
    failShipping: random() < failRate,
  }));
}
