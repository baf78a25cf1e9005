/**
 * Test support: a worker module (MULTIAGENTS_WORKER_MODULES) whose runs retry, fail and fail to
 * undo, so the CLI's views of failed attempts, failed undos and skipped undos can be seen.
 * `flaky.charge` fails its first attempt (retryable), `flaky.ship` always refuses (non-retryable)
 * and `flaky.release`, the undo of the reservation, always fails (non-retryable).
 */
import { NonRetryableError } from '@multiagents/contracts';
import { defineWorker } from '@multiagents/worker-sdk';

export const workers = [
  defineWorker('flaky.reserve', () => ({ reserved: true })),
  defineWorker('flaky.release', () => {
    throw new NonRetryableError('warehouse offline', { code: 'RELEASE_DOWN' });
  }),
  defineWorker('flaky.charge', (_input: unknown, ctx) => {
    if (ctx.attempt === 1) throw Object.assign(new Error('card network hiccup'), { code: 'NETWORK_HICCUP' });
    return { charged: true };
  }),
  defineWorker('flaky.refund', () => ({ refunded: true })),
  defineWorker('flaky.ship', () => {
    throw new NonRetryableError('no carrier', { code: 'CARRIER_REFUSED' });
  }),
];

/** The workflow these workers serve, as a definition file. */
export const FLAKY_WORKFLOW_YAML = [
  'id: flaky_order',
  'version: 1',
  'steps:',
  '  - name: reserve_inventory',
  '    worker: flaky.reserve',
  '    compensation: flaky.release',
  '  - name: charge_payment',
  '    worker: flaky.charge',
  '    compensation: flaky.refund',
  '    retry: { maxAttempts: 3, initialDelayMs: 5 }',
  '  - name: ship_order',
  '    worker: flaky.ship',
  '',
].join('\n');
