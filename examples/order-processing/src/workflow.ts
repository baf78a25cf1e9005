import { WorkflowBuilder } from '@multiagents/core';

/** The order saga of SPEC §8, in TypeScript. `workflow.yaml` beside this file is the same data. */
export const orderWorkflow = new WorkflowBuilder('order_processing')
  .description('Reserve stock, charge the card, ship; undo on failure')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('charge_payment', 'payment.charge', { compensation: 'payment.refund', retry: { maxAttempts: 3 } })
  .step('ship_order', 'shipping.ship', { when: 'context.total > 0', timeoutMs: 30_000 })
  .inputSchema({
    type: 'object',
    required: ['orderId', 'total'],
    properties: {
      orderId: { type: 'string', minLength: 1 },
      total: { type: 'number', minimum: 0 },
      failShipping: { type: 'boolean' },
    },
  })
  .build();
