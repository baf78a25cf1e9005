import { RunState, type Run } from '@multiagents/contracts';

let runCounter = 0;

/**
 * A valid {@link Run} for store tests, with a fresh `txId` unless overridden. Runs made in one
 * process get increasing `createdAt` values so "newest first" is predictable.
 *
 * @example
 * const run = makeRun({ state: RunState.Completed, workflowId: 'orders' });
 */
export function makeRun(overrides: Partial<Run> = {}): Run {
  runCounter += 1;
  const createdAt = overrides.createdAt ?? 1_700_000_000_000 + runCounter;
  return {
    txId: `tx-${process.pid}-${runCounter}-${Math.random().toString(36).slice(2, 8)}`,
    workflowId: 'wf-test',
    workflowVersion: 1,
    state: RunState.Running,
    input: { orderId: `o-${runCounter}` },
    context: { orderId: `o-${runCounter}` },
    steps: {},
    createdAt,
    updatedAt: createdAt,
    signals: {},
    completedCount: 0,
    outputCount: 0,
    ...overrides,
  };
}
