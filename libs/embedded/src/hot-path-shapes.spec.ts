/**
 * The objects made per run and per attempt keep shapes V8 can share: a hidden class per run, or a
 * dictionary object per attempt, cost the embedded mode a sixth to a third of its throughput.
 */
import type { Run } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { v8Shapes } from '@multiagents/testing';
import { defineWorker, type WorkerContext } from '@multiagents/worker-sdk';
import { startEmbedded } from './embedded-stack';

const RUNS = 300;

const workflow = new WorkflowBuilder('shapes').step('one', 'w.one').build();

describe('hot-path shapes', () => {
  it("gives every run's context one hidden class and every attempt's ctx fast properties", async () => {
    const shapes = v8Shapes();
    const contexts: WorkerContext[] = [];
    const stack = await startEmbedded({
      workers: [
        defineWorker('w.one', (_input, ctx) => {
          contexts.push(ctx);
          return { done: true };
        }),
      ],
      definitions: [workflow],
    });
    const started: Run[] = [];
    stack.orchestrator.onRunChanged((run) => {
      if (run.state === 'running' && !('done' in run.context)) started.push(run);
    });
    try {
      // Inputs as they come off the wire: parsed JSON, enough of them for V8's copies to take
      // their fast paths.
      for (let i = 0; i < RUNS; i++) {
        const input = JSON.parse(`{"orderId":"o-${i}","total":${10 + i}}`) as Record<string, unknown>;
        const { txId } = await stack.orchestrator.startWorkflow('shapes', input);
        expect((await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe(
          'completed',
        );
      }
    } finally {
      await stack.close();
    }
    expect(started).toHaveLength(RUNS);
    const first = started[0] as Run;
    const ownClass = started.filter((run) => !shapes.sameHiddenClass(run.context, first.context));
    expect(ownClass.length).toBe(0);

    expect(contexts).toHaveLength(RUNS);
    expect(contexts.filter((ctx) => !shapes.hasFastProperties(ctx)).length).toBe(0);
    const ctx = contexts[0] as WorkerContext;
    expect(contexts.filter((other) => !shapes.sameHiddenClass(other, ctx)).length).toBe(0);
    // What a handler reads is all there.
    expect(ctx.idempotencyKey).toBe(`${ctx.txId}:one`);
    expect(ctx.signal.aborted).toBe(false);
    expect(typeof ctx.logger.info).toBe('function');
  });
});
