import {
  EventType,
  Groups,
  Topics,
  type Envelope,
  type StepCommandPayload,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import type { EventBus, Subscription } from '@multiagents/core';

/** SPEC §8's order saga, as data. */
export const ORDER_WORKFLOW: WorkflowDefinition = {
  id: 'order_processing',
  version: 1,
  steps: [
    {
      name: 'reserve_inventory',
      kind: 'task',
      worker: 'inventory.reserve',
      compensation: 'inventory.release',
    },
    {
      name: 'charge_payment',
      kind: 'task',
      worker: 'payment.charge',
      compensation: 'payment.refund',
      retry: { maxAttempts: 3, initialDelayMs: 1 },
    },
    { name: 'ship_order', kind: 'task', worker: 'shipping.ship' },
  ],
};

/** Workers of {@link ORDER_WORKFLOW}, in the order the definition names them. */
export const ORDER_WORKERS = [
  'inventory.reserve',
  'inventory.release',
  'payment.charge',
  'payment.refund',
  'shipping.ship',
] as const;

/**
 * Answers the order saga's commands on `bus` the way a worker-manager would (a `step.result` per
 * `step.command`): shipping fails, non-retryable, for inputs with `failShipping`; `payment.charge`
 * fails once, retryable, for inputs with `flakyPayment`.
 */
export async function answerOrderCommands(bus: EventBus): Promise<Subscription[]> {
  const attempts = new Map<string, number>();
  return Promise.all(
    ORDER_WORKERS.map((worker) =>
      bus.subscribe(Topics.command(worker), { group: Groups.workers, consumer: 'fake' }, async (d) => {
        const command = d.envelope as Envelope<StepCommandPayload>;
        const input = command.payload.input as { failShipping?: boolean; flakyPayment?: boolean };
        const key = `${command.txId}:${worker}`;
        const attempt = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, attempt);
        const fails =
          (worker === 'shipping.ship' && input.failShipping === true) ||
          (worker === 'payment.charge' && input.flakyPayment === true && attempt === 1);
        const payload = fails
          ? {
              commandId: command.payload.commandId,
              worker,
              ok: false,
              error: { code: 'REFUSED', message: 'no', retryable: worker === 'payment.charge' },
            }
          : { commandId: command.payload.commandId, worker, ok: true, output: { [`${worker}.done`]: true } };
        await bus.publish(Topics.results, [
          { ...command, id: `${command.id}:result`, type: EventType.StepResult, time: Date.now(), payload },
        ]);
      }),
    ),
  );
}
