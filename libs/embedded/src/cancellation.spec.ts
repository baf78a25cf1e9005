/**
 * A run that no longer wants an attempt in flight (it was cancelled, or a parallel branch failed)
 * asks its worker to stop: the handler's `ctx.signal` fires. The run still awaits the attempt,
 * whose outcome counts as any other: one that stops is not compensated, one that completes anyway
 * is. Through eager dispatch and through the in-process bus alike.
 */
import { NonRetryableError, RunState, type WorkflowDefinition } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { waitFor } from '@multiagents/testing';
import { defineWorker, type WorkerContext, type WorkerDefinition } from '@multiagents/worker-sdk';
import { startEmbedded } from './embedded-stack';

const order: WorkflowDefinition = new WorkflowBuilder('cancel_me')
  .step('reserve', 'w.reserve', { compensation: 'w.release' })
  .step('slow', 'w.slow', { compensation: 'w.slow_undo' })
  .build();

/** What the slow handler saw, and the gate that lets one that ignores its signal finish. */
interface Slow {
  started: number;
  abortReasons: string[];
  undone: string[];
  finish(): void;
}

/** `stops`: the slow handler rejects when its signal fires; otherwise it waits for `finish()`. */
function workers(slow: Slow, stops: boolean): WorkerDefinition<never, unknown>[] {
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  slow.finish = () => release();
  const untilAborted = (ctx: WorkerContext): Promise<never> =>
    new Promise((_resolve, reject) => {
      ctx.signal.addEventListener('abort', () => {
        const reason = ctx.signal.reason as Error;
        slow.abortReasons.push(reason.message);
        reject(reason);
      });
    });
  return [
    defineWorker('w.reserve', () => ({ reserved: true })),
    defineWorker('w.release', (_input, ctx) => {
      slow.undone.push(ctx.idempotencyKey);
      return {};
    }),
    defineWorker('w.slow', async (_input, ctx) => {
      slow.started += 1;
      if (stops) return untilAborted(ctx);
      ctx.signal.addEventListener('abort', () =>
        slow.abortReasons.push(String((ctx.signal.reason as Error | undefined)?.message)),
      );
      await released;
      return { done: true };
    }),
    defineWorker('w.slow_undo', (_input, ctx) => {
      slow.undone.push(ctx.idempotencyKey);
      return {};
    }),
  ];
}

const newSlow = (): Slow => ({ started: 0, abortReasons: [], undone: [], finish: () => undefined });

describe.each([
  ['eager dispatch', true],
  ['through the in-process bus', false],
])('a cancel reaches the handler of the attempt in flight (%s)', (_name, eagerDispatch) => {
  it('fires its signal; it stops, is not compensated, and the run ends cancelled', async () => {
    const slow = newSlow();
    const stack = await startEmbedded({ workers: workers(slow, true), definitions: [order], eagerDispatch });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('cancel_me', {});
      await waitFor(() => slow.started === 1, { description: 'the slow handler started' });
      await stack.orchestrator.cancel(txId, 'customer asked');
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });

      expect(run.state).toBe(RunState.Cancelled);
      expect(slow.abortReasons).toHaveLength(1);
      expect(slow.abortReasons[0]).toMatch(/cancelled/);
      // Its attempt failed as cancelled (the engine records an attempt that fails after a cancel so).
      expect(run.steps['slow']).toMatchObject({
        status: 'failed',
        error: { code: 'CANCELLED', retryable: false },
      });
      // Only the completed step is undone: the slow one stopped before it did anything.
      expect(slow.undone).toEqual([`${txId}:reserve:undo`]);
      expect(stack.orchestrator.stats.cancelsBroadcast).toBe(1);
    } finally {
      await stack.close();
    }
  });

  it('awaits a handler that completes anyway, and compensates it', async () => {
    const slow = newSlow();
    const stack = await startEmbedded({ workers: workers(slow, false), definitions: [order], eagerDispatch });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('cancel_me', {});
      await waitFor(() => slow.started === 1, { description: 'the slow handler started' });
      await stack.orchestrator.cancel(txId);
      await waitFor(() => slow.abortReasons.length === 1, { description: 'its signal fired' });
      expect((await stack.orchestrator.getRun(txId)).state).toBe(RunState.Cancelling);
      slow.finish();
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });

      expect(run.state).toBe(RunState.Cancelled);
      expect(run.steps['slow']?.status).toBe('compensated');
      expect(slow.undone).toEqual([`${txId}:slow:undo`, `${txId}:reserve:undo`]);
    } finally {
      await stack.close();
    }
  });
});

it('a failed parallel branch stops the branches still running, which are then not compensated', async () => {
  const definition = {
    id: 'fan_out',
    version: 1,
    steps: [
      {
        name: 'p',
        kind: 'parallel',
        branches: [
          [{ name: 'slow', kind: 'task', worker: 'w.slow', compensation: 'w.slow_undo' }],
          [{ name: 'broken', kind: 'task', worker: 'w.broken', retry: { maxAttempts: 1 } }],
        ],
      },
    ],
  } as WorkflowDefinition;
  const slow = newSlow();
  let started = false;
  const stack = await startEmbedded({
    workers: [
      ...workers(slow, true),
      defineWorker('w.broken', async () => {
        // Fails only once the slow branch runs, so its attempt is in flight at the failure.
        await waitFor(() => slow.started === 1, { description: 'the slow branch started' });
        started = true;
        throw new NonRetryableError('out of stock');
      }),
    ],
    definitions: [definition],
  });
  try {
    const { txId } = await stack.orchestrator.startWorkflow('fan_out', {});
    const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });

    expect(started).toBe(true);
    expect(run.state).toBe(RunState.Failed);
    expect(slow.abortReasons).toHaveLength(1);
    expect(slow.abortReasons[0]).toMatch(/run failed/);
    expect(slow.undone).toEqual([]);
  } finally {
    await stack.close();
  }
});

it('a heartbeat timeout stops the silent handler it gave up on, and the retry runs', async () => {
  const definition = new WorkflowBuilder('silent')
    .step('listen', 'w.silent', { heartbeatTimeoutMs: 300, retry: { maxAttempts: 2, initialDelayMs: 1 } })
    .build();
  const reasons: string[] = [];
  let calls = 0;
  const stack = await startEmbedded({
    workers: [
      defineWorker('w.silent', (_input, ctx) => {
        calls += 1;
        // The first attempt never heartbeats and waits for its signal; the retry answers.
        if (calls > 1) return { heard: true };
        return new Promise((_resolve, reject) =>
          ctx.signal.addEventListener('abort', () => {
            const reason = ctx.signal.reason as Error;
            reasons.push(reason.message);
            reject(reason);
          }),
        );
      }),
    ],
    definitions: [definition],
  });
  try {
    const { txId } = await stack.orchestrator.startWorkflow('silent', {});
    const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });

    expect(run.state).toBe(RunState.Completed);
    expect(run.steps['listen']?.attempts.map((a) => a.outcome)).toEqual(['timed_out', 'completed']);
    expect(reasons).toEqual([
      `attempt ${txId}:listen:1 cancelled: attempt given up (a timeout or an operator action): its result is no longer awaited`,
    ]);
    expect(stack.orchestrator.stats.cancelsBroadcast).toBe(1);
  } finally {
    await stack.close();
  }
});
