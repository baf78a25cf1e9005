/**
 * Operator actions over gRPC, through the typed client, against the embedded stack: RetryStep,
 * SkipStep and ResumeCompensation on failed and compensation_failed runs, and the errors for runs
 * and steps they do not apply to.
 */
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { MultiAgentsError, NonRetryableError, RunState, StepStatus, type Run } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { defineWorker, type WorkerDefinition } from '@multiagents/worker-sdk';
import { startTestControlPlane, type TestControlPlane } from './test-stack';

jest.setTimeout(20_000);

/** How often each worker has been called, by order id: the tests make workers fail N times. */
const calls = new Map<string, number>();

function call(worker: string, orderId: string): number {
  const key = `${worker}:${orderId}`;
  const n = (calls.get(key) ?? 0) + 1;
  calls.set(key, n);
  return n;
}

interface OperatorInput {
  readonly orderId: string;
  /** `operator.work` fails (non-retryably) on its first N calls. */
  readonly workFailures?: number;
  /** `operator.undo` fails (retryably) on its first N calls. */
  readonly undoFailures?: number;
}

const workers = [
  defineWorker('operator.prepare', (input: OperatorInput) => ({ prepared: input.orderId })),
  defineWorker('operator.undo', (input: OperatorInput) => {
    if (call('undo', input.orderId) <= (input.undoFailures ?? 0)) throw new Error('undo service is down');
    return { undone: true };
  }),
  defineWorker('operator.work', (input: OperatorInput) => {
    if (call('work', input.orderId) <= (input.workFailures ?? 0)) {
      throw new NonRetryableError('work refused', { code: 'WORK_REFUSED' });
    }
    return { worked: true };
  }),
  defineWorker('operator.finish', () => ({ finished: true })),
] as WorkerDefinition<never, unknown>[];

/** work fails with nothing to undo before it: the run ends `failed`. */
const lineWorkflow = new WorkflowBuilder('operator_line')
  .step('work', 'operator.work', { retry: { maxAttempts: 1 }, output: 'work' })
  .step('finish', 'operator.finish')
  .build();

/** work fails after prepare completed; prepare's undo gets one attempt per series. */
const undoWorkflow = new WorkflowBuilder('operator_undo')
  .step('prepare', 'operator.prepare', {
    compensation: 'operator.undo',
    compensationRetry: { maxAttempts: 1 },
  })
  .step('work', 'operator.work', { retry: { maxAttempts: 1 } })
  .build();

describe('operator actions over gRPC (embedded mode)', () => {
  let plane: TestControlPlane;
  let client: MultiAgentsClient;

  beforeAll(async () => {
    plane = await startTestControlPlane({}, { workers, definitions: [lineWorkflow, undoWorkflow] });
    client = connect(plane.address, { timeoutMs: 5_000 });
  });

  afterAll(async () => {
    client.close();
    await plane.close();
  });

  async function ended(txId: string): Promise<Run> {
    return plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 });
  }

  /** The domain error the client rebuilt from the call's status (its `code` is the gRPC code's). */
  async function errorOf(promise: Promise<unknown>): Promise<MultiAgentsError> {
    const err: unknown = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MultiAgentsError);
    return err as MultiAgentsError;
  }

  it('ResumeCompensation takes a compensation_failed run on to compensated, one fresh attempt series per call', async () => {
    const { txId } = await client.startWorkflow('operator_undo', {
      orderId: 'u-1',
      workFailures: 1,
      undoFailures: 2,
    });
    const stuck = await ended(txId);
    expect(stuck.state).toBe(RunState.CompensationFailed);
    expect(stuck.compensationQueue).toEqual(['prepare']);
    expect(stuck.steps['prepare']?.compensation).toMatchObject({ status: 'failed', attempt: 1 });

    // The undo fails once more: stuck again, at attempt 2.
    const resumed = await client.resumeCompensation(txId);
    expect(resumed.txId).toBe(txId);
    expect([RunState.Compensating, RunState.CompensationFailed]).toContain(resumed.state);
    await waitFor(txId, (run) => run.steps['prepare']?.compensation?.attempt === 2 && isOver(run));
    expect((await client.getWorkflow(txId)).state).toBe(RunState.CompensationFailed);

    await client.resumeCompensation(txId);
    const final = await ended(txId);
    expect(final.state).toBe(RunState.Compensated);
    expect(final.steps['prepare']?.status).toBe(StepStatus.Compensated);
    expect(final.steps['prepare']?.compensation?.attempts.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'failed'],
      [2, 'failed'],
      [3, 'completed'],
    ]);
    expect(final.compensationQueue).toEqual([]);
    // What the client reads is what the orchestrator has.
    expect(await client.getWorkflow(txId)).toMatchObject({ state: RunState.Compensated, txId });
  });

  it('SkipStep on a compensation_failed run skips the failed compensation and ends the unwinding', async () => {
    const { txId } = await client.startWorkflow('operator_undo', {
      orderId: 'u-2',
      workFailures: 1,
      undoFailures: 5,
    });
    expect((await ended(txId)).state).toBe(RunState.CompensationFailed);
    const skipped = await client.skipStep(txId, 'prepare');
    expect(skipped.state).toBe(RunState.Compensated);
    expect(skipped.steps['prepare']?.compensation?.status).toBe('skipped');
  });

  it('RetryStep takes a failed run on to completed: the step runs again as attempt 2', async () => {
    const { txId } = await client.startWorkflow('operator_line', { orderId: 'r-1', workFailures: 1 });
    const failed = await ended(txId);
    expect(failed.state).toBe(RunState.Failed);
    expect(failed.error).toMatchObject({ code: 'WORK_REFUSED' });

    const retried = await client.retryStep(txId, 'work');
    expect([RunState.Running, RunState.Completed]).toContain(retried.state);
    expect(retried.error).toBeUndefined();
    const final = await ended(txId);
    expect(final.state).toBe(RunState.Completed);
    expect(final.steps['work']).toMatchObject({ status: StepStatus.Completed, attempt: 2 });
    expect(final.steps['work']?.attempts.map((a) => a.outcome)).toEqual(['failed', 'completed']);
    expect(final.context).toMatchObject({ work: { worked: true }, finished: true });
  });

  it('SkipStep on a failed run records the given output and goes on', async () => {
    const { txId } = await client.startWorkflow('operator_line', { orderId: 's-1', workFailures: 9 });
    expect((await ended(txId)).state).toBe(RunState.Failed);
    await client.skipStep(txId, 'work', { worked: 'by hand' });
    const final = await ended(txId);
    expect(final.state).toBe(RunState.Completed);
    expect(final.steps['work']).toMatchObject({ status: StepStatus.Skipped, output: { worked: 'by hand' } });
    expect(final.context).toMatchObject({ work: { worked: 'by hand' }, finished: true });
    expect(calls.get('work:s-1')).toBe(1);
  });

  it('answers FAILED_PRECONDITION on a running run and on a completed one', async () => {
    plane.gate.close();
    const { txId: running } = await client.startWorkflow('gated', { orderId: 'p-1' });
    try {
      for (const action of [
        () => client.retryStep(running, 'hold'),
        () => client.skipStep(running, 'hold'),
        () => client.resumeCompensation(running),
      ]) {
        const err = await errorOf(action());
        expect(err.code).toBe('FAILED_PRECONDITION');
        expect(err.message).toMatch(/operator actions apply to a failed or compensation_failed run/);
      }
    } finally {
      plane.gate.open();
    }
    await client.signalWorkflow(running, 'approved', { by: 'ops' });
    expect((await ended(running)).state).toBe(RunState.Completed);
    const done = await errorOf(client.retryStep(running, 'hold'));
    expect(done.code).toBe('FAILED_PRECONDITION');
    expect(done.message).toMatch(/run is completed/);
  });

  it('refuses a step that did not fail and ResumeCompensation on a failed run; NOT_FOUND for unknown ids', async () => {
    const { txId } = await client.startWorkflow('operator_line', { orderId: 'p-2', workFailures: 9 });
    expect((await ended(txId)).state).toBe(RunState.Failed);
    const notFailed = await errorOf(client.retryStep(txId, 'finish'));
    expect(notFailed.code).toBe('FAILED_PRECONDITION');
    expect(notFailed.message).toMatch(/step finish is pending, not failed/);
    const noUndo = await errorOf(client.resumeCompensation(txId));
    expect(noUndo.code).toBe('FAILED_PRECONDITION');

    const unknownStep = await errorOf(client.skipStep(txId, 'nope'));
    expect(unknownStep.code).toBe('NOT_FOUND');
    expect(unknownStep.message).toMatch(/has no step nope/);
    const unknownRun = await errorOf(client.retryStep('no-such-run', 'work'));
    expect(unknownRun.code).toBe('NOT_FOUND');
    const invalid = await errorOf(client.retryStep(txId, ''));
    expect(invalid.code).toBe('INVALID_ARGUMENT');
    expect(invalid.message).toMatch(/step is required/);
    const tooLarge = await errorOf(client.skipStep(txId, 'work', { blob: 'x'.repeat(300 * 1024) }));
    expect(tooLarge.code).toBe('RESOURCE_EXHAUSTED');
    // Nothing changed.
    expect((await client.getWorkflow(txId)).state).toBe(RunState.Failed);
  });

  function isOver(run: Run): boolean {
    return run.state === RunState.CompensationFailed || run.state === RunState.Compensated;
  }

  async function waitFor(txId: string, check: (run: Run) => boolean): Promise<Run> {
    const until = Date.now() + 5_000;
    for (;;) {
      const run = await plane.stack.orchestrator.getRun(txId);
      if (check(run)) return run;
      if (Date.now() > until) throw new Error(`run ${txId} did not get there: ${JSON.stringify(run)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
});
