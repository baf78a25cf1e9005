/**
 * The two-step saga and its workers that the embedded specs share: each worker records the
 * idempotency key it ran for; `failSecond` makes the second step fail for good. Test-only.
 */
import { NonRetryableError, type WorkflowDefinition } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { defineWorker, type WorkerDefinition } from '@multiagents/worker-sdk';

export const twoSteps: WorkflowDefinition = new WorkflowBuilder('two_steps')
  .step('first', 'w.first', { compensation: 'w.undo_first' })
  .step('second', 'w.second')
  .build();

export function twoStepWorkers(calls: string[], failSecond = false): WorkerDefinition<never, unknown>[] {
  return [
    defineWorker('w.first', (_input, ctx) => {
      calls.push(ctx.idempotencyKey);
      return { first: true };
    }),
    defineWorker('w.undo_first', (_input, ctx) => {
      calls.push(ctx.idempotencyKey);
      return {};
    }),
    defineWorker('w.second', (_input, ctx) => {
      calls.push(ctx.idempotencyKey);
      if (failSecond) throw new NonRetryableError('no');
      return { second: true };
    }),
  ];
}
