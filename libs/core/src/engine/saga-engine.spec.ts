import {
  ErrorCode,
  EventType,
  rebuildContext,
  IllegalTransitionError,
  RunState,
  StepStatus,
  TERMINAL_RUN_STATES,
  Topics,
  type RetryPolicy,
  type StepDefinition,
  type TaskStep,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { compileWorkflow } from '../definition/validate-definition';
import {
  commandsOf,
  eventsOf,
  failure,
  SagaDriver,
  schedulesOf,
  unschedulesOf,
  type SagaDriverOptions,
} from '../test-support/test-saga-driver';
import { deepFreeze } from '../test-support/test-deep-freeze';
import { DEFAULT_COMPENSATION_RETRY_POLICY, DEFAULT_RETRY_POLICY } from './retry-policy';
import {
  assertOperatorTransition,
  assertTransition,
  canOperatorTransition,
  canTransition,
} from './run-transitions';
import {
  commandIdFor,
  createRun,
  decide,
  idempotencyKeyFor,
  inFlightCommands,
  isCommandIdOf,
  MAX_BUFFERED_SIGNALS,
  recoverInFlight,
  type EngineEvent,
} from './saga-engine';
import { timerIdFor } from '../ports/timer';

const TX = 'tx-1';

function task(name: string, worker: string, options: Partial<TaskStep> = {}): TaskStep {
  return { name, kind: 'task', worker, ...options };
}

function workflow(steps: StepDefinition[], extra: Partial<WorkflowDefinition> = {}): WorkflowDefinition {
  return { id: 'wf', version: 1, steps, ...extra };
}

const ORDER = workflow([
  task('reserve', 'inventory.reserve', { compensation: 'inventory.release' }),
  task('charge', 'payment.charge', { compensation: 'payment.refund' }),
  task('ship', 'shipping.ship'),
]);

function drive(definition: WorkflowDefinition, options: SagaDriverOptions = {}): SagaDriver {
  return new SagaDriver(definition, { txId: TX, ...options });
}

/** Worker names of the commands in the driver's last decision. */
function lastWorkers(driver: SagaDriver): string[] {
  return commandsOf(driver.last).map((c) => c.payload.worker);
}

describe('ids', () => {
  it('builds command ids, idempotency keys and timer ids from the run, step and attempt', () => {
    expect(commandIdFor('t', 's', 2)).toBe('t:s:2');
    expect(commandIdFor('t', 's', 1, true)).toBe('t:s:undo:1');
    expect(idempotencyKeyFor('t', 's')).toBe('t:s');
    expect(idempotencyKeyFor('t', 's', true)).toBe('t:s:undo');
    expect(timerIdFor('t', { kind: 'retry', step: 's', attempt: 2 })).toBe('t:retry:s:2');
    expect(timerIdFor('t', { kind: 'timeout', step: 's', attempt: 1, compensation: true })).toBe(
      't:timeout:s:1:undo',
    );
  });

  it('tells whether a command id belongs to a run and step', () => {
    expect(isCommandIdOf(commandIdFor('tx-1', 'ship', 3), 'tx-1', 'ship')).toBe(true);
    expect(isCommandIdOf(commandIdFor('tx-1', 'ship', 1, true), 'tx-1', 'ship')).toBe(true);
    expect(isCommandIdOf('tx-1:ship:', 'tx-1', 'ship')).toBe(true);
    for (const [commandId, txId, step] of [
      ['tx-1:ship:1', 'tx-2', 'ship'],
      ['tx-1:ship:1', 'tx-1', 'shi'],
      ['tx-1:ship:1', 'tx-1', 'shipping'],
      ['tx-1:ship:1', 'tx', 'ship'],
      ['tx-1:ship', 'tx-1', 'ship'],
      ['tx-1-ship:1', 'tx-1', 'ship'],
      ['tx-1:ship-1', 'tx-1', 'ship'],
      ['', 'tx-1', 'ship'],
    ] as const) {
      expect([commandId, isCommandIdOf(commandId, txId, step)]).toEqual([
        commandId,
        commandId.startsWith(`${txId}:${step}:`),
      ]);
    }
  });
});

describe('createRun', () => {
  it('creates a pending run with a record for every step at every level and the input as context', () => {
    const definition = workflow([
      task('a', 'w'),
      { name: 'p', kind: 'parallel', branches: [[task('b', 'w')], [task('c', 'w')]] },
    ]);
    const input = { orderId: 'o-1' };
    const run = createRun({
      txId: TX,
      workflow: definition,
      input,
      now: 5,
      idempotencyKey: 'k',
      traceHeaders: { traceparent: 'tp' },
    });
    expect(run).toMatchObject({
      txId: TX,
      workflowId: 'wf',
      workflowVersion: 1,
      state: RunState.Pending,
      input,
      context: input,
      createdAt: 5,
      updatedAt: 5,
      idempotencyKey: 'k',
      traceHeaders: { traceparent: 'tp' },
      completedCount: 0,
      outputCount: 0,
    });
    expect(run.context).not.toBe(input);
    expect(Object.keys(run.steps)).toEqual(['a', 'p', 'b', 'c']);
    expect(run.steps['b']).toEqual({ name: 'b', status: StepStatus.Pending, attempt: 0, attempts: [] });
  });
});

describe('sequential task steps', () => {
  it('sends one command at a time, in order, with command id, idempotency key and the context as input', () => {
    const d = drive(ORDER, { input: { orderId: 'o-1', total: 10 } });
    const started = d.start();
    expect(d.run.state).toBe(RunState.Running);
    expect(eventsOf(started)[0]?.type).toBe(EventType.WorkflowStarted);
    const [first, ...others] = commandsOf(started);
    expect(others).toEqual([]);
    expect(first?.topic).toBe(Topics.command('inventory.reserve'));
    expect(first?.topic).toBe('commands.inventory.reserve');
    expect(first?.envelope).toMatchObject({
      id: 'tx-1:reserve:1',
      type: 'step.command',
      txId: TX,
      step: 'reserve',
      attempt: 1,
    });
    expect(first?.payload).toEqual({
      commandId: 'tx-1:reserve:1',
      worker: 'inventory.reserve',
      input: { orderId: 'o-1', total: 10 },
      idempotencyKey: 'tx-1:reserve',
      compensation: false,
    });

    d.tick(5).ok('reserve', { reservationId: 'r-1' });
    expect(commandsOf(d.last).map((c) => [c.topic, c.payload.commandId, c.payload.idempotencyKey])).toEqual([
      ['commands.payment.charge', 'tx-1:charge:1', 'tx-1:charge'],
    ]);
    expect(commandsOf(d.last)[0]?.payload.input).toEqual({ orderId: 'o-1', total: 10, reservationId: 'r-1' });

    d.ok('charge', { paymentId: 'p-1', total: 11 });
    expect(lastWorkers(d)).toEqual(['shipping.ship']);
    d.ok('ship', { trackingId: 't-1' });
    expect(commandsOf(d.last)).toEqual([]);
    expect(d.run.state).toBe(RunState.Completed);
    expect(d.run.endedAt).toBe(d.now);
    expect(d.run.context).toEqual({
      orderId: 'o-1',
      total: 11,
      reservationId: 'r-1',
      paymentId: 'p-1',
      trackingId: 't-1',
    });
    expect(['reserve', 'charge', 'ship'].map((s) => [d.step(s).status, d.step(s).completedSeq])).toEqual([
      [StepStatus.Completed, 1],
      [StepStatus.Completed, 2],
      [StepStatus.Completed, 3],
    ]);
    expect(d.step('reserve').attempts).toEqual([
      { attempt: 1, startedAt: 1_000, endedAt: 1_005, outcome: 'completed' },
    ]);
    expect(d.step('reserve').output).toEqual({ reservationId: 'r-1' });
    expect(d.eventTypes()).toEqual([
      EventType.WorkflowStarted,
      EventType.StepStarted,
      EventType.StepCompleted,
      EventType.StepStarted,
      EventType.StepCompleted,
      EventType.StepStarted,
      EventType.StepCompleted,
      EventType.WorkflowCompleted,
    ]);
  });

  it('stores a result under the output key instead of merging it', () => {
    const d = drive(workflow([task('a', 'w', { output: 'quote' }), task('b', 'w')]), { input: { x: 1 } });
    d.start();
    d.ok('a', { price: 3 });
    expect(d.run.context).toEqual({ x: 1, quote: { price: 3 } });
    expect(commandsOf(d.last)[0]?.payload.input).toEqual({ x: 1, quote: { price: 3 } });
  });

  it('keeps a non-object result on the step record without merging it', () => {
    const d = drive(workflow([task('a', 'w'), task('b', 'w', { output: 'n' })]), { input: { x: 1 } });
    d.start();
    d.ok('a', 42);
    expect(d.run.context).toEqual({ x: 1 });
    expect(d.step('a').output).toBe(42);
    d.ok('b', 7);
    expect(d.run.context).toEqual({ x: 1, n: 7 });
  });

  it('evaluates a single-expression input mapping with CEL', () => {
    const d = drive(
      workflow([
        task('a', 'w'),
        task('b', 'w', {
          input: '{"order": input.orderId, "double": context.total * 2.0, "prev": steps.a.output.id}',
        }),
      ]),
      { input: { orderId: 'o-9', total: 2.5 } },
    );
    d.start();
    d.ok('a', { id: 'a-1' });
    expect(commandsOf(d.last)[0]?.payload.input).toEqual({ order: 'o-9', double: 5, prev: 'a-1' });
  });

  it('evaluates a per-field input mapping with CEL, turning CEL ints into numbers', () => {
    const d = drive(
      workflow([
        task('a', 'w', {
          input: { id: 'input.orderId', count: 'size(context.items)', first: 'context.items[0]' },
        }),
      ]),
      { input: { orderId: 'o-1', items: ['x', 'y'] } },
    );
    d.start();
    expect(commandsOf(d.last)[0]?.payload.input).toEqual({ id: 'o-1', count: 2, first: 'x' });
  });

  it('skips a step whose condition is false and goes on with the next one', () => {
    const d = drive(workflow([task('a', 'w.a', { when: 'context.total > 100' }), task('b', 'w.b')]), {
      input: { total: 5 },
    });
    d.start();
    expect(d.step('a').status).toBe(StepStatus.Skipped);
    expect(lastWorkers(d)).toEqual(['w.b']);
    expect(eventsOf(d.last).map((e) => [e.type, e.step])).toEqual([
      [EventType.WorkflowStarted, undefined],
      [EventType.StepSkipped, 'a'],
      [EventType.StepStarted, 'b'],
    ]);
    d.ok('b', {});
    expect(d.run.state).toBe(RunState.Completed);
  });

  it('runs a step whose condition is true', () => {
    const d = drive(workflow([task('a', 'w.a', { when: 'context.total > 100' }), task('b', 'w.b')]), {
      input: { total: 500 },
    });
    d.start();
    expect(lastWorkers(d)).toEqual(['w.a']);
    expect(d.step('a').status).toBe(StepStatus.Running);
  });

  it('a condition can read the result of an earlier step', () => {
    const d = drive(
      workflow([
        task('check', 'w.check'),
        task('act', 'w.act', { when: 'steps.check.output.ok' }),
        task('end', 'w.end'),
      ]),
    );
    d.start();
    d.ok('check', { ok: false });
    expect(d.step('act').status).toBe(StepStatus.Skipped);
    expect(lastWorkers(d)).toEqual(['w.end']);
  });

  it('fails the step when its condition errors at run time, and compensates what completed', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'w.undo' }),
        task('b', 'w.b', { when: 'context.missing > 1' }),
      ]),
    );
    d.start();
    d.ok('a', {});
    expect(d.step('b').status).toBe(StepStatus.Failed);
    expect(d.step('b').error).toMatchObject({ code: 'EXPRESSION_ERROR', retryable: false });
    expect(d.step('b').error?.message).toMatch(/when "context\.missing > 1" failed: .*missing/);
    expect(d.run.error).toMatchObject({ code: 'EXPRESSION_ERROR', details: { step: 'b' } });
    expect(d.run.state).toBe(RunState.Compensating);
    expect(lastWorkers(d)).toEqual(['w.undo']);
  });

  it('fails the step when its condition does not yield a bool', () => {
    const d = drive(workflow([task('a', 'w.a', { when: 'context.total' })]), { input: { total: 3 } });
    d.start();
    expect(d.step('a').error).toMatchObject({ code: 'EXPRESSION_ERROR' });
    expect(d.step('a').error?.message).toMatch(/did not yield a bool/);
    expect(d.run.state).toBe(RunState.Failed);
  });

  it('fails the step without sending a command when its input mapping yields what JSON cannot hold', () => {
    const d = drive(workflow([task('a', 'w.a', { input: { raw: 'b"ab"' } })]));
    d.start();
    expect(commandsOf(d.last)).toEqual([]);
    expect(d.step('a').error).toMatchObject({ code: 'EXPRESSION_ERROR', retryable: false });
    expect(d.step('a').error?.message).toMatch(/the result is a Uint8Array, not JSON data/);
    expect(d.run.state).toBe(RunState.Failed);
  });

  it('fails the step without sending a command when its input mapping errors at run time', () => {
    const d = drive(
      workflow([task('a', 'w.a', { input: { x: 'context.nope' }, retry: { maxAttempts: 5 } })]),
    );
    d.start();
    expect(commandsOf(d.last)).toEqual([]);
    expect(d.step('a')).toMatchObject({
      status: StepStatus.Failed,
      attempt: 1,
      error: { code: 'EXPRESSION_ERROR' },
    });
    expect(d.run.state).toBe(RunState.Failed);
    expect(d.eventTypes()).toEqual([
      EventType.WorkflowStarted,
      EventType.StepFailed,
      EventType.WorkflowFailed,
    ]);
  });

  it('a second start is ignored', () => {
    const d = drive(ORDER);
    d.start();
    const before = d.run;
    const again = d.start();
    expect(again.ignored).toBeDefined();
    expect(again.run).toBe(before);
    expect(again.commands).toEqual([]);
    expect(again.lifecycle).toEqual([]);
  });
});

describe('run budgets for agent steps', () => {
  const usage = (totalTokens: number, costUsd = 0) => ({
    answer: { text: 'x' },
    usage: { promptTokens: totalTokens - 1, completionTokens: 1, totalTokens, costUsd },
  });

  it('sums what agent steps report, failed attempts included, and ignores plain steps', () => {
    const d = drive(
      workflow(
        [
          task('plan', 'agent.plan', { agent: true, retry: { maxAttempts: 2, initialDelayMs: 0 } }),
          task('plain', 'w.plain'),
        ],
        { budget: { maxTokens: 1_000 } },
      ),
    );
    d.start();
    const retried = d.fail(
      'plan',
      failure('AGENT_BAD_ANSWER', {
        details: { usage: { promptTokens: 5, completionTokens: 5, totalTokens: 10, costUsd: 0.01 } },
      }),
    );
    const completed = d.ok('plan', usage(20, 0.02));
    const plain = d.ok('plain', { usage: { totalTokens: 999 } });
    // Each attempt's event carries what it spent: the metrics count tokens and cost from there.
    expect(retried.lifecycle.find((e) => e.type === EventType.StepRetrying)).toMatchObject({
      usage: { promptTokens: 5, completionTokens: 5, costUsd: 0.01 },
    });
    expect(completed.lifecycle.find((e) => e.type === EventType.StepCompleted)).toMatchObject({
      step: 'plan',
      usage: { promptTokens: 19, completionTokens: 1, costUsd: 0.02 },
    });
    expect(plain.lifecycle.find((e) => e.type === EventType.StepCompleted)).not.toHaveProperty('usage');
    expect(d.run.usage).toEqual({
      promptTokens: 24,
      completionTokens: 6,
      totalTokens: 30,
      costUsd: 0.03,
      attempts: 2,
    });
  });

  it('fails the next agent step with BUDGET_EXCEEDED before dispatching it, and compensates', () => {
    const d = drive(
      workflow(
        [
          task('research', 'agent.research', { agent: true, compensation: 'undo.research' }),
          task('write', 'agent.write', { agent: true }),
        ],
        { budget: { maxTokens: 100 } },
      ),
    );
    d.start();
    const next = d.ok('research', usage(100));
    expect(commandsOf(next).map((c) => c.envelope.id)).toEqual(['tx-1:research:undo:1']);
    expect(d.step('write').error).toMatchObject({ code: ErrorCode.BudgetExceeded, retryable: false });
    expect(d.step('write').attempts).toEqual([]);
    expect(d.run.state).toBe(RunState.Compensating);
  });

  it('reserves the agent attempts in flight: parallel branches cannot all start past the budget', () => {
    const d = drive(
      workflow(
        [
          {
            name: 'fan',
            kind: 'parallel',
            branches: [[task('a', 'agent.a', { agent: true })], [task('b', 'agent.b', { agent: true })]],
          },
        ],
        { budget: { maxTokens: 1 } },
      ),
    );
    const started = d.start();
    expect(commandsOf(started).map((c) => c.envelope.id)).toEqual(['tx-1:a:1']);
    expect(d.step('b').error?.code).toBe(ErrorCode.BudgetExceeded);
    d.ok('a', usage(1));
    expect(d.run.state).toBe(RunState.Failed);
  });
});

describe('schedule-to-start timeout', () => {
  const S2S = workflow([
    task('a', 'w.a', { compensation: 'w.undo-a' }),
    task('b', 'w.b', { scheduleToStartTimeoutMs: 5_000 }),
  ]);

  it('asks the worker-manager to say it took the command, and arms a deadline for it', () => {
    const d = drive(S2S);
    d.start();
    const sent = d.ok('a', {});
    expect(commandsOf(sent)[0]?.payload.scheduleToStartTimeoutMs).toBe(5_000);
    expect(schedulesOf(sent).map((t) => [t.id, t.dueAt])).toEqual([['tx-1:start:b:1', d.now + 5_000]]);
  });

  it('fails the attempt with a non-retryable NO_WORKER when nobody took it, and compensates', () => {
    const d = drive(S2S);
    d.start();
    d.ok('a', {});
    const failed = d.fire({ kind: 'start', step: 'b', attempt: 1 });
    expect(d.step('b').error).toMatchObject({ code: ErrorCode.NoWorker, retryable: false });
    expect(d.step('b').attempts[0]?.outcome).toBe('timed_out');
    expect(d.run.state).toBe(RunState.Compensating);
    expect(commandsOf(failed).map((c) => c.envelope.id)).toEqual(['tx-1:a:undo:1']);
  });

  it('a started heartbeat records the pick-up and disarms the deadline', () => {
    const d = drive(S2S);
    d.start();
    d.ok('a', {});
    d.tick(40);
    const picked = d.heartbeat('b');
    expect(picked.ignored).toBeUndefined();
    expect(unschedulesOf(picked)).toEqual(['tx-1:start:b:1']);
    expect(d.step('b').attempts[0]?.pickedUpAt).toBe(d.now);
    expect(d.heartbeat('b').ignored).toMatch(/^step has no heartbeat timeout/);
    expect(d.fireStale({ kind: 'start', step: 'b', attempt: 1 }).ignored).toMatch(/stale timer/);
    d.ok('b', {});
    expect(d.run.state).toBe(RunState.Completed);
    expect(d.timers.size).toBe(0);
  });

  it('takes its default from the definition, and a result in time leaves no timer behind', () => {
    const d = drive(workflow([task('a', 'w.a')], { defaults: { scheduleToStartTimeoutMs: 100 } }));
    expect(schedulesOf(d.start()).map((t) => t.id)).toEqual(['tx-1:start:a:1']);
    expect(unschedulesOf(d.ok('a', {}))).toEqual(['tx-1:start:a:1']);
    expect(d.timers.size).toBe(0);
  });
});

describe('retries and timeouts', () => {
  const retry: RetryPolicy = { maxAttempts: 4, initialDelayMs: 100, backoffCoefficient: 3, maxDelayMs: 500 };

  it('schedules each retry at initialDelayMs × coefficient^(n-1), capped at maxDelayMs; the timer starts attempt n+1', () => {
    const d = drive(workflow([task('a', 'w.a', { retry })]));
    d.start();
    const expectedDelays = [100, 300, 500];
    for (const [index, delayMs] of expectedDelays.entries()) {
      const attempt = index + 1;
      const failed = d.fail('a', failure('FLAKY'));
      expect(d.step('a').status).toBe(StepStatus.Retrying);
      expect(commandsOf(failed)).toEqual([]);
      expect(schedulesOf(failed)).toEqual([
        {
          id: `tx-1:retry:a:${attempt + 1}`,
          txId: TX,
          dueAt: d.now + delayMs,
          payload: { kind: 'retry', step: 'a', attempt: attempt + 1 },
        },
      ]);
      expect(eventsOf(failed).map((e) => [e.type, e.attempt, e.payload['delayMs']])).toEqual([
        [EventType.StepRetrying, attempt, delayMs],
      ]);
      const retried = d.fire({ kind: 'retry', step: 'a', attempt: attempt + 1 });
      expect(commandsOf(retried).map((c) => [c.payload.commandId, c.payload.idempotencyKey])).toEqual([
        [`tx-1:a:${attempt + 1}`, 'tx-1:a'],
      ]);
      expect(d.step('a')).toMatchObject({ status: StepStatus.Running, attempt: attempt + 1 });
    }
    d.ok('a', { done: true });
    expect(d.run.state).toBe(RunState.Completed);
    expect(d.step('a').attempts.map((a) => a.outcome)).toEqual(['failed', 'failed', 'failed', 'completed']);
  });

  it('fails the step after maxAttempts; with nothing to compensate the run fails', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'w.undo' }),
        task('b', 'w.b', { retry: { maxAttempts: 2 } }),
      ]),
    );
    d.start();
    d.ok('a', {});
    d.fail('b', failure('FLAKY'));
    d.fire({ kind: 'retry', step: 'b', attempt: 2 });
    d.fail('b', failure('STILL_FLAKY'));
    expect(d.step('b')).toMatchObject({
      status: StepStatus.Failed,
      attempt: 2,
      error: { code: 'STILL_FLAKY' },
    });
    expect(d.run.error).toMatchObject({ code: 'STILL_FLAKY', details: { step: 'b' } });
    expect(d.run.state).toBe(RunState.Compensating);
  });

  it('uses the default retry policy when the step sets none', () => {
    const d = drive(workflow([task('a', 'w.a')]));
    d.start();
    for (let attempt = 1; attempt < DEFAULT_RETRY_POLICY.maxAttempts; attempt++) {
      const failed = d.fail('a', failure('FLAKY'));
      expect(schedulesOf(failed)[0]?.dueAt).toBe(
        d.now +
          DEFAULT_RETRY_POLICY.initialDelayMs * DEFAULT_RETRY_POLICY.backoffCoefficient ** (attempt - 1),
      );
      d.fire({ kind: 'retry', step: 'a', attempt: attempt + 1 });
    }
    d.fail('a', failure('FLAKY'));
    expect(d.run.state).toBe(RunState.Failed);
  });

  it('uses the workflow defaults for retry and timeout', () => {
    const d = drive(
      workflow([task('a', 'w.a')], {
        defaults: { retry: { maxAttempts: 2, initialDelayMs: 7 }, timeoutMs: 50 },
      }),
    );
    d.start();
    expect(commandsOf(d.last)[0]?.payload.timeoutMs).toBe(50);
    expect(d.timer({ kind: 'timeout', step: 'a', attempt: 1 })?.dueAt).toBe(d.now + 50);
    d.fail('a', failure('FLAKY'));
    expect(d.timer({ kind: 'retry', step: 'a', attempt: 2 })?.dueAt).toBe(d.now + 7);
  });

  it('falls back to the default for a retry field that is explicitly undefined', () => {
    const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 2, initialDelayMs: undefined } })]));
    d.start();
    const failed = d.fail('a', failure('FLAKY'));
    expect(schedulesOf(failed)[0]?.dueAt).toBe(d.now + DEFAULT_RETRY_POLICY.initialDelayMs);
  });

  it('starts the next attempt at once when the delay is 0', () => {
    const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 3, initialDelayMs: 0 } })]));
    d.start();
    const failed = d.fail('a', failure('FLAKY'));
    expect(schedulesOf(failed)).toEqual([]);
    expect(commandsOf(failed).map((c) => c.payload.commandId)).toEqual(['tx-1:a:2']);
  });

  it('fails at once on an error code listed in nonRetryableErrors', () => {
    const d = drive(
      workflow([task('a', 'w.a', { retry: { maxAttempts: 5, nonRetryableErrors: ['CARD_DECLINED'] } })]),
    );
    d.start();
    const failed = d.fail('a', failure('CARD_DECLINED'));
    expect(schedulesOf(failed)).toEqual([]);
    expect(d.step('a')).toMatchObject({ status: StepStatus.Failed, attempt: 1 });
    expect(d.run.state).toBe(RunState.Failed);
  });

  it('fails at once on a NonRetryable error (retryable: false)', () => {
    const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 5 } })]));
    d.start();
    d.fail('a', failure(ErrorCode.NonRetryable, { retryable: false }));
    expect(d.step('a')).toMatchObject({ status: StepStatus.Failed, attempt: 1 });
    expect(d.run.state).toBe(RunState.Failed);
    expect(eventsOf(d.last).map((e) => e.type)).toEqual([EventType.StepFailed, EventType.WorkflowFailed]);
    expect(eventsOf(d.last)[1]?.payload['error']).toMatchObject({
      code: ErrorCode.NonRetryable,
      details: { step: 'a' },
    });
  });

  it('times out an attempt with a retryable TIMEOUT and ignores the late result of that attempt', () => {
    const d = drive(
      workflow([task('a', 'w.a', { timeoutMs: 1_000, retry: { maxAttempts: 2, initialDelayMs: 10 } })]),
    );
    const started = d.start();
    expect(commandsOf(started)[0]?.payload.timeoutMs).toBe(1_000);
    expect(schedulesOf(started)).toEqual([
      { id: 'tx-1:timeout:a:1', txId: TX, dueAt: 2_000, payload: { kind: 'timeout', step: 'a', attempt: 1 } },
    ]);
    const timedOut = d.fire({ kind: 'timeout', step: 'a', attempt: 1 });
    expect(d.step('a')).toMatchObject({
      status: StepStatus.Retrying,
      error: { code: ErrorCode.Timeout, retryable: true },
    });
    expect(d.step('a').attempts[0]?.outcome).toBe('timed_out');
    expect(schedulesOf(timedOut).map((t) => t.id)).toEqual(['tx-1:retry:a:2']);
    // Its worker may still be at it: asked to stop, as its result no longer counts.
    expect(timedOut.abandoned).toEqual(['tx-1:a:1']);
    expect(d.fire({ kind: 'retry', step: 'a', attempt: 2 }).abandoned).toEqual([]);
    expect(d.timer({ kind: 'timeout', step: 'a', attempt: 2 })?.dueAt).toBe(d.now + 1_000);

    const before = d.run;
    const late = d.ok('a', { from: 'attempt 1' }, 1);
    expect(late.ignored).toMatch(/late or duplicate/);
    expect(late.run).toBe(before);

    const done = d.ok('a', { from: 'attempt 2' });
    expect(unschedulesOf(done)).toEqual(['tx-1:timeout:a:2']);
    expect(d.run.state).toBe(RunState.Completed);
    expect(d.run.context).toEqual({ from: 'attempt 2' });
  });

  it('fails the step when the last attempt times out', () => {
    const d = drive(workflow([task('a', 'w.a', { timeoutMs: 100, retry: { maxAttempts: 1 } })]));
    d.start();
    d.fire({ kind: 'timeout', step: 'a', attempt: 1 });
    expect(d.step('a')).toMatchObject({ status: StepStatus.Failed, error: { code: ErrorCode.Timeout } });
    expect(d.run.state).toBe(RunState.Failed);
  });

  it('times out a step that stops sending heartbeats; each heartbeat pushes the deadline back', () => {
    const d = drive(workflow([task('a', 'w.a', { heartbeatTimeoutMs: 300, retry: { maxAttempts: 1 } })]));
    const started = d.start();
    expect(commandsOf(started)[0]?.payload.heartbeatTimeoutMs).toBe(300);
    expect(d.timer({ kind: 'heartbeat', step: 'a', attempt: 1 })?.dueAt).toBe(1_300);

    const beat = d.tick(200).heartbeat('a');
    expect(beat.ignored).toBeUndefined();
    expect(schedulesOf(beat)).toEqual([
      {
        id: 'tx-1:heartbeat:a:1',
        txId: TX,
        dueAt: 1_500,
        payload: { kind: 'heartbeat', step: 'a', attempt: 1 },
      },
    ]);
    expect(commandsOf(beat)).toEqual([]);
    expect(d.timer({ kind: 'heartbeat', step: 'a', attempt: 1 })?.dueAt).toBe(1_500);

    expect(d.fire({ kind: 'heartbeat', step: 'a', attempt: 1 }).abandoned).toEqual(['tx-1:a:1']);
    expect(d.step('a')).toMatchObject({
      status: StepStatus.Failed,
      error: { code: ErrorCode.HeartbeatTimeout, retryable: true },
    });
    expect(d.run.state).toBe(RunState.Failed);
  });

  it('ignores a heartbeat timer claimed just before a heartbeat replaced it', () => {
    const d = drive(workflow([task('a', 'w.a', { heartbeatTimeoutMs: 300, retry: { maxAttempts: 1 } })]));
    d.start();
    d.tick(250).heartbeat('a'); // new deadline: 1_550
    // The old timer (due 1_300) was claimed by a timer poller before the heartbeat's write and is
    // delivered now, at 1_320: the heartbeat wins.
    const late = d.tick(70).send({ type: 'timer', timer: { kind: 'heartbeat', step: 'a', attempt: 1 } });
    expect(late.ignored).toMatch(/stale heartbeat timer/);
    expect(d.step('a').status).toBe(StepStatus.Running);
  });

  it('retries after a heartbeat timeout, and ignores heartbeats of old attempts or of steps without a heartbeat timeout', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { heartbeatTimeoutMs: 300, retry: { maxAttempts: 2, initialDelayMs: 1 } }),
        task('b', 'w.b'),
      ]),
    );
    d.start();
    d.fire({ kind: 'heartbeat', step: 'a', attempt: 1 });
    expect(d.step('a').status).toBe(StepStatus.Retrying);
    d.fire({ kind: 'retry', step: 'a', attempt: 2 });
    expect(d.heartbeat('a', 1).ignored).toMatch(/not running/);
    const done = d.ok('a', {});
    expect(unschedulesOf(done)).toContain('tx-1:heartbeat:a:2');
    expect(d.heartbeat('b').ignored).toMatch(/no heartbeat timeout/);
    expect(d.heartbeat('nope', 1).ignored).toMatch(/unknown/);
  });

  it('records a sign of life of a step without a heartbeat timeout once a minute, and schedules nothing', () => {
    const d = drive(workflow([task('long', 'w.long')]));
    d.start();
    expect(d.heartbeat('long').ignored).toMatch(/no heartbeat timeout/);
    d.tick(60_000);
    const beat = d.heartbeat('long');
    expect(beat.ignored).toBeUndefined();
    expect(d.step('long').heartbeatAt).toBe(d.now);
    expect(schedulesOf(beat)).toEqual([]);
    d.tick(30_000);
    expect(d.heartbeat('long').ignored).toMatch(/once a minute/);
    expect(d.step('long').heartbeatAt).toBe(d.now - 30_000);
  });
});

describe('parallel steps', () => {
  const FAN = workflow([
    task('before', 'w.before', { compensation: 'undo.before' }),
    {
      name: 'fan',
      kind: 'parallel',
      branches: [
        [task('l1', 'w.l1', { compensation: 'undo.l1' }), task('l2', 'w.l2', { compensation: 'undo.l2' })],
        [task('m', 'w.m', { compensation: 'undo.m', retry: { maxAttempts: 2, initialDelayMs: 50 } })],
        [task('r', 'w.r', { compensation: 'undo.r' })],
      ],
    },
    task('after', 'w.after'),
  ]);

  it('fans out: the first step of every branch is commanded in the same decision', () => {
    const d = drive(FAN);
    d.start();
    d.ok('before', {});
    expect(lastWorkers(d)).toEqual(['w.l1', 'w.m', 'w.r']);
    expect(d.step('fan').status).toBe(StepStatus.Running);
  });

  it('fans in: the step after the parallel step starts only once every branch has finished', () => {
    const d = drive(FAN);
    d.start();
    d.ok('before', {});
    d.ok('r', { r: 1 });
    expect(lastWorkers(d)).toEqual([]);
    d.ok('l1', { l: 1 });
    expect(lastWorkers(d)).toEqual(['w.l2']);
    d.ok('m', { m: 1 });
    expect(lastWorkers(d)).toEqual([]);
    expect(d.step('fan').status).toBe(StepStatus.Running);
    d.ok('l2', { l: 2 });
    expect(d.step('fan').status).toBe(StepStatus.Completed);
    expect(lastWorkers(d)).toEqual(['w.after']);
    expect(commandsOf(d.last)[0]?.payload.input).toEqual({ r: 1, l: 2, m: 1 });
    d.ok('after', {});
    expect(d.run.state).toBe(RunState.Completed);
  });

  it('when one branch fails while another has an attempt in flight, waits for it, then compensates everything in reverse completion order', () => {
    const d = drive(FAN);
    d.start();
    d.ok('before', {});
    d.ok('l1', {});
    const failed = d.fail('r', failure('BOOM', { retryable: false }));
    expect(commandsOf(failed)).toEqual([]);
    expect(d.run.state).toBe(RunState.Running);
    expect(d.run.compensationQueue).toBeUndefined();
    expect(d.step('l2').status).toBe(StepStatus.Running);
    expect(d.step('m').status).toBe(StepStatus.Running);

    d.ok('m', {});
    expect(commandsOf(d.last)).toEqual([]);
    d.ok('l2', {});
    expect(d.run.state).toBe(RunState.Compensating);
    expect(d.run.compensationQueue).toEqual(['l2', 'm', 'l1', 'before']);
    const undone: string[] = [];
    for (const step of ['l2', 'm', 'l1', 'before']) {
      const [command, ...more] = commandsOf(d.last);
      expect(more).toEqual([]);
      expect(command?.payload).toMatchObject({
        worker: `undo.${step}`,
        commandId: `tx-1:${step}:undo:1`,
        idempotencyKey: `tx-1:${step}:undo`,
        compensation: true,
      });
      undone.push(step);
      d.undone(step);
    }
    expect(undone).toEqual(['l2', 'm', 'l1', 'before']);
    expect(d.run.state).toBe(RunState.Compensated);
    expect(d.step('r').status).toBe(StepStatus.Failed);
    expect(d.step('r').compensation).toBeUndefined();
    expect(d.step('fan').status).toBe(StepStatus.Failed);
    expect(d.step('after').status).toBe(StepStatus.Pending);
  });

  it('a late-failing sibling is not compensated; a sibling waiting to retry is cancelled at once', () => {
    const d = drive(FAN);
    d.start();
    d.ok('before', {});
    d.fail('m', failure('FLAKY'));
    expect(d.timer({ kind: 'retry', step: 'm', attempt: 2 })).toBeDefined();
    d.fail('r', failure('BOOM', { retryable: false }));
    expect(d.step('m').status).toBe(StepStatus.Cancelled);
    expect(d.timer({ kind: 'retry', step: 'm', attempt: 2 })).toBeUndefined();
    expect(d.run.state).toBe(RunState.Running);
    d.fail('l1', failure('FLAKY'));
    expect(d.step('l1').status).toBe(StepStatus.Failed);
    expect(d.run.state).toBe(RunState.Compensating);
    expect(d.run.compensationQueue).toEqual(['before']);
    expect(d.run.error).toMatchObject({ code: 'BOOM', details: { step: 'r' } });
  });

  it('skips a parallel step whose condition is false', () => {
    const d = drive(
      workflow([
        { name: 'fan', kind: 'parallel', when: 'false', branches: [[task('x', 'w.x')]] },
        task('after', 'w.after'),
      ]),
    );
    d.start();
    expect(d.step('fan').status).toBe(StepStatus.Skipped);
    expect(d.step('x').status).toBe(StepStatus.Pending);
    expect(lastWorkers(d)).toEqual(['w.after']);
  });
});

describe('wait and sleep steps', () => {
  const APPROVAL = workflow([
    task('a', 'w.a', { compensation: 'undo.a' }),
    { name: 'approval', kind: 'wait', signal: 'approved', timeoutMs: 5_000 },
    task('b', 'w.b'),
  ]);

  it('keeps a signal that arrives early and completes the wait at once when reached', () => {
    const d = drive(APPROVAL);
    d.start();
    const early = d.signal('approved', { approver: 'ann' });
    expect(early.ignored).toBeUndefined();
    expect(d.run.signals).toEqual({ approved: [{ approver: 'ann' }] });
    const reached = d.ok('a', {});
    expect(d.step('approval').status).toBe(StepStatus.Completed);
    expect(schedulesOf(reached).map((t) => t.payload.kind)).not.toContain('wait');
    expect(lastWorkers(d)).toEqual(['w.b']);
    expect(d.run.signals).toEqual({ approved: [] });
    expect(d.run.context).toEqual({ approver: 'ann' });
    expect(d.run.state).toBe(RunState.Running);
  });

  it('waits in state waiting and completes on a signal, storing it under the output key', () => {
    const d = drive(
      workflow([
        { name: 'approval', kind: 'wait', signal: 'approved', output: 'decision' },
        task('b', 'w.b'),
      ]),
    );
    const started = d.start();
    expect(d.run.state).toBe(RunState.Waiting);
    expect(eventsOf(started).map((e) => e.type)).toContain(EventType.WorkflowWaiting);
    expect(d.signal('other', 1).ignored).toBeUndefined();
    expect(d.step('approval').status).toBe(StepStatus.Waiting);
    d.signal('approved', { ok: true });
    expect(d.run.state).toBe(RunState.Running);
    expect(d.run.context).toEqual({ decision: { ok: true } });
    expect(lastWorkers(d)).toEqual(['w.b']);
    expect(d.run.signals).toEqual({ other: [1] });
  });

  it('unschedules the deadline when the signal arrives', () => {
    const d = drive(APPROVAL);
    d.start();
    d.ok('a', {});
    expect(d.timer({ kind: 'wait', step: 'approval', attempt: 1 })?.dueAt).toBe(d.now + 5_000);
    const signalled = d.signal('approved', {});
    expect(unschedulesOf(signalled)).toContain('tx-1:wait:approval:1');
    expect(d.timers.size).toBe(0);
    expect(d.fireStale({ kind: 'wait', step: 'approval', attempt: 1 }).ignored).toBe('stale timer');
  });

  it('fails the step with WAIT_TIMEOUT when the deadline passes, then compensates', () => {
    const d = drive(APPROVAL);
    d.start();
    d.ok('a', {});
    d.fire({ kind: 'wait', step: 'approval', attempt: 1 });
    expect(d.step('approval')).toMatchObject({
      status: StepStatus.Failed,
      error: { code: ErrorCode.WaitTimeout },
    });
    expect(d.run.state).toBe(RunState.Compensating);
    expect(lastWorkers(d)).toEqual(['undo.a']);
    d.undone('a');
    expect(d.run.state).toBe(RunState.Compensated);
  });

  it('sleeps on a durable timer', () => {
    const d = drive(workflow([{ name: 'nap', kind: 'sleep', durationMs: 750 }, task('b', 'w.b')]));
    const started = d.start();
    expect(schedulesOf(started)).toEqual([
      { id: 'tx-1:sleep:nap:1', txId: TX, dueAt: 1_750, payload: { kind: 'sleep', step: 'nap', attempt: 1 } },
    ]);
    expect(d.run.state).toBe(RunState.Waiting);
    d.fire({ kind: 'sleep', step: 'nap', attempt: 1 });
    expect(d.now).toBe(1_750);
    expect(d.step('nap').status).toBe(StepStatus.Completed);
    expect(lastWorkers(d)).toEqual(['w.b']);
    expect(d.run.state).toBe(RunState.Running);
  });

  it('keeps at most MAX_BUFFERED_SIGNALS early signals of one name', () => {
    const d = drive(workflow([task('a', 'w.a'), { name: 'w', kind: 'wait', signal: 'go' }]));
    d.start();
    for (let i = 0; i < MAX_BUFFERED_SIGNALS; i++) expect(d.signal('go', i).ignored).toBeUndefined();
    expect(d.signal('go', 'one too many').ignored).toMatch(/full/);
    expect(d.run.signals['go']).toHaveLength(MAX_BUFFERED_SIGNALS);
  });
});

describe('cancel', () => {
  it('waits for the attempt in flight, then compensates the completed steps newest first, and ends cancelled', () => {
    const d = drive(ORDER);
    d.start();
    d.ok('reserve', {});
    const cancelled = d.cancel('customer asked');
    expect(d.run.state).toBe(RunState.Cancelling);
    expect(d.run.cancelRequested).toBe(true);
    expect(commandsOf(cancelled)).toEqual([]);
    d.ok('charge', {});
    expect(d.run.compensationQueue).toEqual(['charge', 'reserve']);
    expect(lastWorkers(d)).toEqual(['payment.refund']);
    expect(d.run.state).toBe(RunState.Cancelling);
    d.undone('charge');
    expect(lastWorkers(d)).toEqual(['inventory.release']);
    d.undone('reserve');
    expect(d.run.state).toBe(RunState.Cancelled);
    expect(d.step('ship').status).toBe(StepStatus.Pending);
    expect(d.eventTypes().slice(-1)).toEqual([EventType.WorkflowCancelled]);
  });

  it('names the attempts in flight it no longer wants (abandoned) on the transition that began the unwinding, once', () => {
    const d = drive(ORDER);
    d.start();
    expect(d.ok('reserve', {}).abandoned).toEqual([]);
    expect(d.cancel().abandoned).toEqual(['tx-1:charge:1']);
    // Still awaited: its result (here, a completion) counts and is compensated.
    expect(d.ok('charge', {}).abandoned).toEqual([]);
    expect(d.run.compensationQueue).toEqual(['charge', 'reserve']);
    expect(d.undone('charge').abandoned).toEqual([]);
  });

  it('abandons the branches still running when a parallel branch fails, never a compensation', () => {
    const d = drive(
      workflow([
        task('first', 'w.first', { compensation: 'w.undo_first' }),
        {
          name: 'p',
          kind: 'parallel',
          branches: [
            [task('a', 'w.a', { compensation: 'w.undo_a' })],
            [task('b', 'w.b', { retry: { maxAttempts: 1 } })],
            [task('c', 'w.c')],
          ],
        },
      ]),
    );
    d.start();
    d.ok('first', {});
    d.ok('c', {});
    expect(d.fail('b', failure('BROKEN', { retryable: false })).abandoned).toEqual(['tx-1:a:1']);
    const last = d.ok('a', {});
    expect(lastWorkers(d)).toEqual(['w.undo_a']);
    expect(last.abandoned).toEqual([]);
  });

  it('abandons nothing when nothing is in flight', () => {
    const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 3, initialDelayMs: 10 } })]));
    d.start();
    d.fail('a', failure('FLAKY'));
    expect(d.cancel().abandoned).toEqual([]);
  });

  it('does not compensate an in-flight attempt that fails after the cancel, and does not retry it', () => {
    const d = drive(ORDER);
    d.start();
    d.ok('reserve', {});
    d.cancel();
    const failed = d.fail('charge', failure('FLAKY'));
    expect(schedulesOf(failed).map((t) => t.payload.kind)).not.toContain('retry');
    expect(d.step('charge').status).toBe(StepStatus.Failed);
    expect(d.run.compensationQueue).toEqual(['reserve']);
    d.undone('reserve');
    expect(d.run.state).toBe(RunState.Cancelled);
  });

  it('is refused while a failure is already unwinding, which then ends compensated', () => {
    const d = drive(
      workflow([
        {
          name: 'p',
          kind: 'parallel',
          branches: [
            [task('a', 'w.a', { compensation: 'w.undo_a' })],
            [task('b', 'w.b', { retry: { maxAttempts: 1 } })],
          ],
        },
      ]),
    );
    d.start();
    d.fail('b', failure('BROKEN', { retryable: false })); // a is still in flight
    expect(d.cancel().ignored).toMatch(/already unwinding/);
    d.ok('a', {});
    d.undone('a');
    expect(d.run.state).toBe(RunState.Compensated);
  });

  it('with nothing to compensate goes straight to cancelled', () => {
    const d = drive(workflow([task('a', 'w.a'), { name: 'w', kind: 'wait', signal: 'go', timeoutMs: 100 }]));
    d.start();
    d.ok('a', {});
    expect(d.run.state).toBe(RunState.Waiting);
    const cancelled = d.cancel();
    expect(d.run.state).toBe(RunState.Cancelled);
    expect(d.step('w').status).toBe(StepStatus.Cancelled);
    expect(unschedulesOf(cancelled)).toEqual(['tx-1:wait:w:1']);
    expect(eventsOf(cancelled).map((e) => e.type)).toEqual([EventType.WorkflowCancelled]);
  });

  it('cancels a pending run', () => {
    const d = drive(ORDER);
    d.cancel();
    expect(d.run.state).toBe(RunState.Cancelled);
    expect(d.start().ignored).toBeDefined();
  });

  it('cancels a sleeping run and a step waiting to retry', () => {
    const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 3, initialDelayMs: 10 } })]));
    d.start();
    d.fail('a', failure('FLAKY'));
    const cancelled = d.cancel();
    expect(unschedulesOf(cancelled)).toEqual(['tx-1:retry:a:2']);
    expect(d.step('a').status).toBe(StepStatus.Cancelled);
    expect(d.run.state).toBe(RunState.Cancelled);
  });

  it('is ignored by the engine for a terminal run, a run already cancelling and a compensating run', () => {
    const done = drive(workflow([task('a', 'w.a')]));
    done.start();
    done.ok('a', {});
    const terminal = done.run;
    const ignored = done.cancel();
    expect(ignored).toEqual({
      run: terminal,
      commands: [],
      lifecycle: [],
      schedule: [],
      cancel: [],
      changedSteps: [],
      ignored: 'run is completed',
    });

    const twice = drive(ORDER);
    twice.start();
    twice.cancel();
    expect(twice.cancel().ignored).toBe('run is cancelling');

    const unwinding = drive(ORDER);
    unwinding.start();
    unwinding.ok('reserve', {});
    unwinding.fail('charge', failure('NOPE', { retryable: false }));
    expect(unwinding.run.state).toBe(RunState.Compensating);
    expect(unwinding.cancel().ignored).toBe('run is compensating');
  });
});

describe('compensation', () => {
  it('undoes completed steps in reverse completion order with <txId>:<step>:undo keys, skipping steps without compensation', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'undo.a' }),
        task('b', 'w.b'),
        task('c', 'w.c', { compensation: 'undo.c', compensationTimeoutMs: 900 }),
        task('d', 'w.d'),
      ]),
      { input: { orderId: 'o' } },
    );
    d.start();
    d.ok('a', { a: 1 });
    d.ok('b', { b: 1 });
    d.ok('c', { c: 1 });
    const failed = d.fail('d', failure('NOPE', { retryable: false }));
    expect(d.run.state).toBe(RunState.Compensating);
    expect(eventsOf(failed).map((e) => e.type)).toEqual([
      EventType.StepFailed,
      EventType.WorkflowCompensating,
      EventType.StepStarted,
    ]);
    expect(eventsOf(failed)[1]?.payload).toMatchObject({ steps: ['c', 'a'], error: { code: 'NOPE' } });
    const [undoC] = commandsOf(failed);
    expect(undoC?.topic).toBe('commands.undo.c');
    expect(undoC?.envelope.id).toBe('tx-1:c:undo:1');
    expect(undoC?.payload).toEqual({
      commandId: 'tx-1:c:undo:1',
      worker: 'undo.c',
      input: { orderId: 'o', a: 1, b: 1, c: 1 },
      idempotencyKey: 'tx-1:c:undo',
      compensation: true,
      timeoutMs: 900,
    });
    expect(d.timer({ kind: 'timeout', step: 'c', attempt: 1, compensation: true })?.dueAt).toBe(d.now + 900);
    const undoneC = d.undone('c');
    expect(unschedulesOf(undoneC)).toEqual(['tx-1:timeout:c:1:undo']);
    expect(d.step('c').status).toBe(StepStatus.Compensated);
    expect(commandsOf(undoneC).map((c) => c.payload.idempotencyKey)).toEqual(['tx-1:a:undo']);
    const last = d.undone('a');
    expect(eventsOf(last).map((e) => e.type)).toEqual([
      EventType.CompensationCompleted,
      EventType.WorkflowCompensated,
    ]);
    expect(d.run.state).toBe(RunState.Compensated);
    expect(d.run.compensationQueue).toEqual([]);
    expect(d.step('b').status).toBe(StepStatus.Completed);
  });

  it('retries a compensation with its own policy', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', {
          compensation: 'undo.a',
          retry: { maxAttempts: 1 },
          compensationRetry: { maxAttempts: 3, initialDelayMs: 40, backoffCoefficient: 5 },
        }),
        task('b', 'w.b', { retry: { maxAttempts: 1 } }),
      ]),
    );
    d.start();
    d.ok('a', {});
    d.fail('b', failure('NOPE'));
    const first = d.undoFailed('a', failure('DB_DOWN'));
    expect(d.step('a').compensation).toMatchObject({
      status: 'retrying',
      attempt: 1,
      error: { code: 'DB_DOWN' },
    });
    expect(schedulesOf(first)).toEqual([
      {
        id: 'tx-1:retry:a:2:undo',
        txId: TX,
        dueAt: d.now + 40,
        payload: { kind: 'retry', step: 'a', attempt: 2, compensation: true },
      },
    ]);
    const retried = d.fire({ kind: 'retry', step: 'a', attempt: 2, compensation: true });
    expect(commandsOf(retried).map((c) => [c.payload.commandId, c.payload.idempotencyKey])).toEqual([
      ['tx-1:a:undo:2', 'tx-1:a:undo'],
    ]);
    const second = d.undoFailed('a', failure('DB_DOWN'));
    expect(schedulesOf(second)[0]?.dueAt).toBe(d.now + 200);
    d.fire({ kind: 'retry', step: 'a', attempt: 3, compensation: true });
    expect(d.undone('a', 1).ignored).toMatch(/late or duplicate/);
    d.undone('a');
    expect(d.run.state).toBe(RunState.Compensated);
    expect(d.step('a').compensation?.attempts.map((a) => a.outcome)).toEqual([
      'failed',
      'failed',
      'completed',
    ]);
  });

  it('uses the default compensation policy and times out a compensation attempt', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'undo.a', compensationTimeoutMs: 100 }),
        task('b', 'w.b', { retry: { maxAttempts: 1 } }),
      ]),
    );
    d.start();
    d.ok('a', {});
    d.fail('b', failure('NOPE'));
    const timedOut = d.fire({ kind: 'timeout', step: 'a', attempt: 1, compensation: true });
    expect(d.step('a').compensation).toMatchObject({
      status: 'retrying',
      error: { code: ErrorCode.Timeout },
    });
    expect(schedulesOf(timedOut)[0]?.dueAt).toBe(d.now + DEFAULT_COMPENSATION_RETRY_POLICY.initialDelayMs);
    expect(timedOut.abandoned).toEqual(['tx-1:a:undo:1']);
  });

  it('stops in compensation_failed when a compensation fails after its retries, listing what is left (head = the failed one)', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'undo.a' }),
        task('b', 'w.b', {
          compensation: 'undo.b',
          compensationRetry: { maxAttempts: 2, initialDelayMs: 0 },
        }),
        task('c', 'w.c', { compensation: 'undo.c' }),
        task('d', 'w.d', { retry: { maxAttempts: 1 } }),
      ]),
    );
    d.start();
    d.ok('a', {});
    d.ok('b', {});
    d.ok('c', {});
    d.fail('d', failure('NOPE'));
    d.undone('c');
    const firstTry = d.undoFailed('b', failure('STUCK'));
    expect(commandsOf(firstTry).map((c) => c.payload.commandId)).toEqual(['tx-1:b:undo:2']);
    const stuck = d.undoFailed('b', failure('STUCK'));
    expect(d.run.state).toBe(RunState.CompensationFailed);
    expect(d.run.compensationQueue).toEqual(['b', 'a']);
    expect(d.step('b')).toMatchObject({
      status: StepStatus.CompensationFailed,
      compensation: { status: 'failed' },
    });
    expect(d.step('a').status).toBe(StepStatus.Completed);
    expect(commandsOf(stuck)).toEqual([]);
    expect(eventsOf(stuck).map((e) => e.type)).toEqual([
      EventType.CompensationFailed,
      EventType.WorkflowStuck,
    ]);
    expect(eventsOf(stuck)[1]?.payload).toMatchObject({ remaining: ['b', 'a'], error: { code: 'STUCK' } });
  });

  it('a non-retryable compensation error stops at once', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'undo.a', compensationRetry: { maxAttempts: 5 } }),
        task('b', 'w.b', { retry: { maxAttempts: 1 } }),
      ]),
    );
    d.start();
    d.ok('a', {});
    d.fail('b', failure('NOPE'));
    d.undoFailed('a', failure('GONE', { retryable: false }));
    expect(d.run.state).toBe(RunState.CompensationFailed);
    expect(d.run.compensationQueue).toEqual(['a']);
  });

  it('a failure with nothing to compensate ends failed', () => {
    const d = drive(
      workflow([task('a', 'w.a'), task('b', 'w.b', { compensation: 'undo.b', retry: { maxAttempts: 1 } })]),
    );
    d.start();
    d.ok('a', {});
    const failed = d.fail('b', failure('NOPE'));
    expect(d.run.state).toBe(RunState.Failed);
    expect(d.run.compensationQueue).toBeUndefined();
    expect(commandsOf(failed)).toEqual([]);
    expect(eventsOf(failed).map((e) => e.type)).toEqual([EventType.StepFailed, EventType.WorkflowFailed]);
  });

  it('compensates a failed step that declared partial effects, first', () => {
    const d = drive(
      workflow([task('a', 'w.a', { compensation: 'undo.a' }), task('b', 'w.b', { compensation: 'undo.b' })]),
    );
    d.start();
    d.ok('a', {});
    d.fail('b', failure('HALF_DONE', { retryable: false, partialEffects: true }));
    expect(d.step('b')).toMatchObject({
      status: StepStatus.Compensating,
      partialEffects: true,
      completedSeq: 2,
    });
    expect(d.step('b').error).toMatchObject({ code: 'HALF_DONE' });
    expect(d.run.compensationQueue).toEqual(['b', 'a']);
    expect(lastWorkers(d)).toEqual(['undo.b']);
    d.undone('b');
    d.undone('a');
    expect(d.run.state).toBe(RunState.Compensated);
  });

  describe('partial effects declared by an earlier attempt (it charged the card, then the network dropped)', () => {
    const CHARGE = workflow([
      task('a', 'w.a', { compensation: 'undo.a' }),
      task('b', 'w.b', {
        compensation: 'undo.b',
        timeoutMs: 100,
        retry: { maxAttempts: 2, initialDelayMs: 10 },
      }),
    ]);

    /** a completed; b's attempt 1 left effects and failed retryably; b's attempt 2 is running. */
    function chargedThenRetried(): SagaDriver {
      const d = drive(CHARGE);
      d.start();
      d.ok('a', {});
      d.fail('b', failure('CHARGED_THEN_DROPPED', { partialEffects: true }));
      expect(d.step('b')).toMatchObject({
        status: StepStatus.Retrying,
        partialEffects: true,
        completedSeq: 2,
      });
      d.fire({ kind: 'retry', step: 'b', attempt: 2 });
      return d;
    }

    it.each([
      ['a non-retryable error', (d: SagaDriver) => d.fail('b', failure('DECLINED', { retryable: false }))],
      ['a retryable error with no retry left', (d: SagaDriver) => d.fail('b', failure('FLAKY'))],
      ['a timeout', (d: SagaDriver) => d.fire({ kind: 'timeout', step: 'b', attempt: 2 })],
    ])(
      'are undone when the last attempt, declaring none, fails on %s',
      (_ending, finalFailure: (d: SagaDriver) => unknown) => {
        const d = chargedThenRetried();
        finalFailure(d);
        expect(d.step('b')).toMatchObject({
          status: StepStatus.Compensating,
          partialEffects: true,
          completedSeq: 2,
        });
        expect(d.run.compensationQueue).toEqual(['b', 'a']);
        expect(lastWorkers(d)).toEqual(['undo.b']);
        d.undone('b');
        d.undone('a');
        expect(d.run.state).toBe(RunState.Compensated);
      },
    );

    it('are undone when a cancel stops the step while it waits to retry', () => {
      const d = drive(CHARGE);
      d.start();
      d.ok('a', {});
      d.fail('b', failure('CHARGED_THEN_DROPPED', { partialEffects: true }));
      d.cancel();
      expect(d.step('b').status).toBe(StepStatus.Compensating);
      expect(d.run.compensationQueue).toEqual(['b', 'a']);
      d.undone('b');
      d.undone('a');
      expect(d.run.state).toBe(RunState.Cancelled);
    });

    // Effects are undone newest first: those of b's first attempt came before y's completion, so
    // y is undone before b, whatever b's later attempts did (a final failure keeps that place).
    const BRANCHES = workflow([
      task('before', 'w.before', { compensation: 'undo.before' }),
      {
        name: 'p',
        kind: 'parallel',
        branches: [
          [task('b', 'w.b', { compensation: 'undo.b', retry: { maxAttempts: 2, initialDelayMs: 50 } })],
          [task('y', 'w.y', { compensation: 'undo.y' })],
        ],
      },
      task('after', 'w.after', { retry: { maxAttempts: 1 } }),
    ]);

    it('order the unwinding by when they were left: a branch that completed after them is undone first', () => {
      const d = drive(BRANCHES);
      d.start();
      d.ok('before', {});
      d.fail('b', failure('HALF_DONE', { partialEffects: true }));
      d.ok('y', {});
      d.fire({ kind: 'retry', step: 'b', attempt: 2 });
      d.fail('b', failure('DECLINED', { retryable: false }));
      expect(d.run.compensationQueue).toEqual(['y', 'b', 'before']);
      expect(
        ['before', 'b', 'y'].map((name) => [name, d.step(name).completedSeq, d.step(name).partialEffects]),
      ).toEqual([
        ['before', 1, undefined],
        ['b', 2, true],
        ['y', 3, undefined],
      ]);
    });

    it('of a step that then completes: it is undone as any completed step, in its completion order', () => {
      const d = drive(BRANCHES);
      d.start();
      d.ok('before', {});
      d.fail('b', failure('HALF_DONE', { partialEffects: true }));
      d.ok('y', {});
      d.fire({ kind: 'retry', step: 'b', attempt: 2 });
      d.ok('b', {});
      expect(d.step('b')).toMatchObject({ status: StepStatus.Completed, completedSeq: 4 });
      expect(d.step('b').partialEffects).toBeUndefined();
      d.fail('after', failure('NOPE'));
      expect(d.run.compensationQueue).toEqual(['b', 'y', 'before']);
    });
  });
});

describe('events that change nothing', () => {
  function started(): SagaDriver {
    const d = drive(
      workflow([
        task('a', 'w.a', { timeoutMs: 100, retry: { maxAttempts: 3, initialDelayMs: 10 } }),
        task('b', 'w.b'),
      ]),
    );
    d.start();
    return d;
  }

  it('a duplicate result is ignored and the run is returned unchanged (same object)', () => {
    const d = started();
    d.ok('a', { n: 1 });
    const before = d.run;
    const duplicate = d.ok('a', { n: 2 }, 1);
    expect(duplicate).toEqual({
      run: before,
      commands: [],
      lifecycle: [],
      schedule: [],
      cancel: [],
      changedSteps: [],
      ignored: 'late or duplicate result',
    });
    expect(duplicate.run).toBe(before);
    expect(d.run.context).toEqual({ n: 1 });
  });

  it('a late result of an old attempt is ignored', () => {
    const d = started();
    d.fail('a', failure('FLAKY'));
    d.fire({ kind: 'retry', step: 'a', attempt: 2 });
    const before = d.run;
    expect(d.fail('a', failure('FLAKY'), 1).run).toBe(before);
    expect(d.ok('a', {}, 1).ignored).toBe('late or duplicate result');
    expect(d.step('a')).toMatchObject({ status: StepStatus.Running, attempt: 2 });
  });

  it('a result for a future attempt, an unknown step or a non-task step is ignored', () => {
    const d = started();
    const before = d.run;
    expect(d.ok('a', {}, 2).run).toBe(before);
    expect(d.ok('ghost', {}, 1).ignored).toBe('unknown task step ghost');
    const sleepy = drive(workflow([{ name: 'nap', kind: 'sleep', durationMs: 5 }]));
    sleepy.start();
    expect(sleepy.ok('nap', {}, 1).ignored).toBe('unknown task step nap');
  });

  it('stale timers are ignored: a timeout of a finished attempt, a retry already used, an unknown step', () => {
    const d = started();
    d.fail('a', failure('FLAKY'));
    expect(d.fireStale({ kind: 'timeout', step: 'a', attempt: 1 }).ignored).toBe('stale timer');
    d.fire({ kind: 'retry', step: 'a', attempt: 2 });
    const before = d.run;
    expect(d.fireStale({ kind: 'retry', step: 'a', attempt: 2 }).run).toBe(before);
    expect(d.fireStale({ kind: 'retry', step: 'a', attempt: 5 }).ignored).toBe('stale timer');
    expect(d.fireStale({ kind: 'sleep', step: 'a', attempt: 1 }).ignored).toBe('stale timer');
    expect(d.fireStale({ kind: 'timeout', step: 'ghost', attempt: 1 }).ignored).toBe('unknown step ghost');
    expect(d.fireStale({ kind: 'timeout', step: 'a', attempt: 1, compensation: true }).ignored).toBe(
      'stale timer',
    );
    d.ok('a', {});
    expect(d.fireStale({ kind: 'timeout', step: 'a', attempt: 2 }).ignored).toBe('stale timer');
  });

  it('a retry timer of an earlier attempt is ignored while the step waits for its next retry', () => {
    const d = started();
    d.fail('a', failure('FLAKY'));
    d.fire({ kind: 'retry', step: 'a', attempt: 2 });
    d.fail('a', failure('FLAKY'));
    expect(d.step('a')).toMatchObject({ status: StepStatus.Retrying, attempt: 2 });
    const before = d.run;
    const stale = d.fireStale({ kind: 'retry', step: 'a', attempt: 2 });
    expect(stale.ignored).toBe('stale timer');
    expect(stale.run).toBe(before);
    expect(d.fireStale({ kind: 'retry', step: 'a', attempt: 4 }).ignored).toBe('stale timer');
  });

  it('a duplicate compensation result is ignored', () => {
    const d = drive(
      workflow([
        task('a', 'w.a', { compensation: 'undo.a' }),
        task('b', 'w.b', { compensation: 'undo.b' }),
        task('c', 'w.c', { retry: { maxAttempts: 1 } }),
      ]),
    );
    d.start();
    d.ok('a', {});
    d.ok('b', {});
    d.fail('c', failure('NOPE'));
    d.undone('b');
    const before = d.run;
    const duplicate = d.undone('b', 1);
    expect(duplicate.ignored).toBe('late or duplicate compensation result');
    expect(duplicate.run).toBe(before);
    expect(d.undoFailed('b', failure('LATE'), 1).run).toBe(before);
    d.undone('a');
    expect(d.run.state).toBe(RunState.Compensated);
    expect(d.undone('a', 1).ignored).toBe('run is compensated');
  });

  it('any event for a terminal run is ignored', () => {
    const d = started();
    d.fail('a', failure('NOPE', { retryable: false }));
    expect(d.run.state).toBe(RunState.Failed);
    const final = d.run;
    for (const decision of [
      d.ok('a', {}, 1),
      d.signal('go'),
      d.cancel(),
      d.fireStale({ kind: 'timeout', step: 'a', attempt: 1 }),
      d.heartbeat('a', 1),
      d.start(),
    ]) {
      expect(decision).toEqual({
        run: final,
        commands: [],
        lifecycle: [],
        schedule: [],
        cancel: [],
        changedSteps: [],
        ignored: 'run is failed',
      });
    }
  });
});

describe('run transitions', () => {
  const ALL = Object.values(RunState);
  const SPEC_EDGES: [RunState, RunState][] = [
    [RunState.Pending, RunState.Running],
    [RunState.Running, RunState.Completed],
    [RunState.Running, RunState.Waiting],
    [RunState.Waiting, RunState.Running],
    [RunState.Running, RunState.Failed],
    [RunState.Running, RunState.Compensating],
    [RunState.Compensating, RunState.Compensated],
    [RunState.Compensating, RunState.CompensationFailed],
    [RunState.Running, RunState.Cancelling],
    [RunState.Cancelling, RunState.Cancelled],
  ];

  it('allows every transition drawn in SPEC §3', () => {
    for (const [from, to] of SPEC_EDGES) {
      expect([from, to, canTransition(from, to)]).toEqual([from, to, true]);
      expect(() => assertTransition(from, to)).not.toThrow();
    }
  });

  it('allows nothing out of a terminal state', () => {
    for (const from of TERMINAL_RUN_STATES) {
      for (const to of ALL) {
        expect([from, to, canTransition(from, to)]).toEqual([from, to, false]);
      }
    }
  });

  it('refuses transitions SPEC §3 does not allow, with an IllegalTransitionError', () => {
    const illegal: [RunState, RunState][] = [
      [RunState.Pending, RunState.Completed],
      [RunState.Running, RunState.Running],
      [RunState.Running, RunState.Compensated],
      [RunState.Running, RunState.Cancelled],
      [RunState.Compensating, RunState.Running],
      [RunState.Compensating, RunState.Cancelling],
      [RunState.Cancelling, RunState.Running],
      [RunState.Cancelling, RunState.Compensated],
      [RunState.Completed, RunState.Compensating],
      [RunState.Failed, RunState.Running],
    ];
    for (const [from, to] of illegal) {
      expect([from, to, canTransition(from, to)]).toEqual([from, to, false]);
      let thrown: unknown;
      try {
        assertTransition(from, to, TX);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(IllegalTransitionError);
      expect(thrown).toMatchObject({
        code: ErrorCode.IllegalTransition,
        from,
        to,
        txId: TX,
        retryable: false,
      });
    }
  });

  it('every state a run goes through is reached by an allowed transition', () => {
    const d = drive(ORDER);
    d.start();
    d.ok('reserve', {});
    d.fail('charge', failure('NOPE', { retryable: false }));
    d.undone('reserve');
    const states = [RunState.Pending, ...d.events().map((e) => e.payload['state'] as RunState)];
    const distinct = states.filter((s, i) => i === 0 || s !== states[i - 1]);
    expect(distinct).toEqual([
      RunState.Pending,
      RunState.Running,
      RunState.Compensating,
      RunState.Compensated,
    ]);
    for (let i = 1; i < distinct.length; i++)
      expect(canTransition(distinct[i - 1]!, distinct[i]!)).toBe(true);
  });
});

describe('purity', () => {
  it('never mutates its input: a whole workflow runs on deep-frozen runs', () => {
    // The driver deep-freezes every run before `decide` sees it; any write would throw.
    const d = drive(
      workflow([
        task('a', 'w.a', {
          compensation: 'undo.a',
          timeoutMs: 100,
          heartbeatTimeoutMs: 50,
          input: { x: 'context.x' },
        }),
        {
          name: 'p',
          kind: 'parallel',
          branches: [
            [task('b', 'w.b', { compensation: 'undo.b' })],
            [{ name: 'nap', kind: 'sleep', durationMs: 5 }],
          ],
        },
        { name: 'w', kind: 'wait', signal: 'go', timeoutMs: 100 },
        task('c', 'w.c', {
          compensation: 'undo.c',
          compensationRetry: { maxAttempts: 2, initialDelayMs: 1 },
        }),
        task('d', 'w.d', { retry: { maxAttempts: 2, initialDelayMs: 1 } }),
      ]),
      { input: { x: 1 } },
    );
    d.signal('go', { early: true });
    d.start();
    d.heartbeat('a');
    d.ok('a', { a: [1, 2] });
    d.ok('b', { b: { deep: true } });
    d.fire({ kind: 'sleep', step: 'nap', attempt: 1 });
    d.ok('c', {});
    d.fail('d', failure('FLAKY'));
    d.fire({ kind: 'retry', step: 'd', attempt: 2 });
    d.fail('d', failure('FLAKY', { partialEffects: true }));
    d.undoFailed('c', failure('X'));
    d.fire({ kind: 'retry', step: 'c', attempt: 2, compensation: true });
    d.undone('c');
    d.undone('b');
    d.undone('a');
    expect(d.run.state).toBe(RunState.Compensated);
    expect(Object.isFrozen(d.decisions[0]?.run)).toBe(true);
  });

  it('a frozen run really refuses writes (so the test above can fail)', () => {
    const run = deepFreeze(createRun({ txId: TX, workflow: ORDER, input: { a: 1 }, now: 0 }));
    expect(() => {
      run.context['a'] = 2;
    }).toThrow(TypeError);
  });

  it('gives the same decision for the same inputs', () => {
    const compiled = compileWorkflow(ORDER);
    const run = createRun({ txId: TX, workflow: ORDER, input: {}, now: 0 });
    expect(decide(compiled, run, { type: 'start' }, 10)).toEqual(
      decide(compiled, run, { type: 'start' }, 10),
    );
    expect(run.state).toBe(RunState.Pending);
  });
});

describe('lifecycle events', () => {
  it('come as one ordered list per transition, each with the state the run was in right after it', () => {
    const d = drive(ORDER, { txId: 'tx-9' });
    d.start();
    expect(eventsOf(d.last).map((e) => [e.type, e.step, e.payload['state']])).toEqual([
      [EventType.WorkflowStarted, undefined, RunState.Running],
      [EventType.StepStarted, 'reserve', RunState.Running],
    ]);
    d.ok('reserve', {});
    d.ok('charge', {});
    const last = d.ok('ship', {});
    expect(eventsOf(last).map((e) => [e.type, e.step, e.payload['state']])).toEqual([
      [EventType.StepCompleted, 'ship', RunState.Running],
      [EventType.WorkflowCompleted, undefined, RunState.Completed],
    ]);
    expect(eventsOf(last)[0]?.payload['durationMs']).toBe(0);
  });

  it("carry the run's duration on the event that ends it, and each failure's duration", () => {
    const d = drive(ORDER, { now: 1_000 });
    d.start();
    d.tick(10).ok('reserve', {});
    d.tick(20).ok('charge', {});
    const failed = d.tick(30).fail('ship', failure('NO_STOCK', { retryable: false }));
    const shipFailed = eventsOf(failed).find((e) => e.type === EventType.StepFailed);
    expect(shipFailed?.payload['durationMs']).toBe(30);
    d.tick(5).undone('charge');
    const ended = d.tick(7).undone('reserve');
    const terminal = eventsOf(ended).at(-1);
    expect(terminal?.type).toBe(EventType.WorkflowCompensated);
    // From the run's creation (start at 1_000) to the last compensation's result at 1_072.
    expect(terminal?.payload['durationMs']).toBe(72);
  });

  it('commands carry the trace headers captured at start', () => {
    const compiled = compileWorkflow(ORDER);
    const run = createRun({
      txId: TX,
      workflow: ORDER,
      input: {},
      now: 0,
      traceHeaders: { traceparent: '00-abc-def-01' },
    });
    const decision = decide(compiled, run, { type: 'start' }, 0);
    expect(decision.commands).toHaveLength(1);
    for (const command of decision.commands) {
      expect(command.headers).toEqual({ traceparent: '00-abc-def-01' });
    }
  });
});

describe('commands sent again when their results do not come (recoverInFlight)', () => {
  /** a reads context.order.id; b, in the other branch, replaces order with a string. */
  function split(a: Partial<TaskStep> = {}): WorkflowDefinition {
    return workflow([
      {
        name: 'p',
        kind: 'parallel',
        branches: [
          [task('a', 'w.a', { input: { id: 'context.order.id' }, ...a })],
          [task('b', 'w.b', { compensation: 'undo.b' })],
        ],
      },
    ]);
  }

  it('builds the running attempts and compensations again, same ids and inputs', () => {
    const d = drive(split(), { input: { order: { id: 'o-1' } } });
    const started = d.start();
    expect(recoverInFlight(d.workflow, d.run, d.now)).toEqual({
      commands: started.commands,
      unsendable: [],
    });
    d.fail('a', failure('NOPE', { retryable: false }));
    const failed = d.ok('b', {});
    expect(inFlightCommands(d.workflow, d.run, d.now)).toEqual(failed.commands);
    expect(lastWorkers(d)).toEqual(['undo.b']);
  });

  it('fails an attempt whose input mapping fails now that a branch changed the context, instead of waiting for ever', () => {
    const d = drive(split(), { input: { order: { id: 'o-1' } } });
    d.start();
    expect(commandsOf(d.last).map((c) => c.payload.input)).toEqual([{ id: 'o-1' }, { order: { id: 'o-1' } }]);
    d.ok('b', { order: 'replaced' });

    const found = recoverInFlight(d.workflow, d.run, d.now);
    expect(found.commands).toEqual([]);
    expect(found.unsendable).toEqual([
      {
        step: 'a',
        attempt: 1,
        commandId: 'tx-1:a:1',
        error: expect.objectContaining({ code: 'EXPRESSION_ERROR', retryable: false }),
        fail: {
          type: 'result',
          step: 'a',
          commandId: 'tx-1:a:1',
          outcome: { ok: false, error: found.unsendable[0]?.error },
        },
      },
    ]);
    expect(found.unsendable[0]?.error.message).toMatch(
      /^no result came and its command cannot be sent again: input failed: .*\bid\b/,
    );

    // Fed to decide, it fails the step as any failure does: the run unwinds what completed.
    d.send(found.unsendable[0]?.fail as EngineEvent);
    expect(d.step('a')).toMatchObject({ status: StepStatus.Failed, error: { code: 'EXPRESSION_ERROR' } });
    expect(d.run.state).toBe(RunState.Compensating);
    expect(lastWorkers(d)).toEqual(['undo.b']);
    // The attempt's own result, should its worker have had the command after all, comes too late.
    expect(d.ok('a', {}, 1).ignored).toMatch(/late or duplicate/);
    d.undone('b');
    expect(d.run.state).toBe(RunState.Compensated);
  });

  it('leaves such an attempt to a deadline of its own, whose retry then fails on the mapping', () => {
    const d = drive(split({ timeoutMs: 500, retry: { maxAttempts: 2, initialDelayMs: 10 } }), {
      input: { order: { id: 'o-1' } },
    });
    d.start();
    d.ok('b', { order: 'replaced' });
    const [unsendable, ...more] = recoverInFlight(d.workflow, d.run, d.now).unsendable;
    expect(more).toEqual([]);
    expect(unsendable).toMatchObject({ step: 'a', commandId: 'tx-1:a:1' });
    expect(unsendable?.fail).toBeUndefined();
    d.fire({ kind: 'timeout', step: 'a', attempt: 1 });
    d.fire({ kind: 'retry', step: 'a', attempt: 2 });
    expect(d.step('a')).toMatchObject({ status: StepStatus.Failed, error: { code: 'EXPRESSION_ERROR' } });
    expect(d.run.state).toBe(RunState.Compensating);
  });
});

describe('what a store writes', () => {
  it('changedSteps names exactly the records a transition changed', () => {
    const d = drive(ORDER);
    expect(d.start().changedSteps).toEqual(['reserve']);
    expect(d.ok('reserve', { r: 1 }).changedSteps).toEqual(['reserve', 'charge']);
    expect(d.heartbeat('charge').changedSteps).toEqual([]);
    expect(d.fail('charge', failure('FLAKY')).changedSteps).toEqual(['charge']);
  });

  it('the context is the input plus the outputs in arrival order, so the store need not keep it', () => {
    const d = drive(workflow([task('a', 'w.a'), task('b', 'w.b', { output: 'bOut' }), task('c', 'w.c')]), {
      input: { x: 1, y: 1 },
    });
    d.start();
    d.ok('a', { y: 2, z: 3 });
    d.ok('b', [1, 2]);
    d.ok('c', 'not merged');
    expect(d.run.context).toEqual({ x: 1, y: 2, z: 3, bOut: [1, 2] });
    expect(rebuildContext(d.run.input, d.run.steps)).toEqual(d.run.context);
    expect([d.step('a').outputSeq, d.step('b').outputSeq, d.step('b').outputKey]).toEqual([1, 2, 'bOut']);
  });
});

describe('operator actions', () => {
  /** a (no undo) → b (2 attempts, no undo) → c: b's failure leaves nothing to undo, so the run fails. */
  const LINE = workflow([
    task('a', 'w.a'),
    task('b', 'w.b', { retry: { maxAttempts: 2, initialDelayMs: 10 }, output: 'bResult' }),
    task('c', 'w.c'),
  ]);

  function failedRun(): SagaDriver {
    const d = drive(LINE);
    d.start();
    d.ok('a', { a: 1 });
    d.fail('b', failure('FLAKY'));
    d.fire({ kind: 'retry', step: 'b', attempt: 2 });
    d.fail('b', failure('FLAKY'));
    expect(d.run.state).toBe(RunState.Failed);
    return d;
  }

  /** a and b undoable, c fails at once; b's undo gets one attempt, so it sticks in compensation_failed. */
  const STUCK = workflow([
    task('a', 'w.a', { compensation: 'undo.a' }),
    task('b', 'w.b', {
      compensation: 'undo.b',
      compensationRetry: { maxAttempts: 1, initialDelayMs: 20 },
    }),
    task('c', 'w.c', { retry: { maxAttempts: 1 } }),
  ]);

  function stuckRun(cancel = false): SagaDriver {
    const d = drive(STUCK);
    d.start();
    d.ok('a', {});
    d.ok('b', {});
    if (cancel) {
      d.cancel();
      d.ok('c', {});
    } else {
      d.fail('c', failure('NOPE'));
    }
    d.undoFailed('b', failure('UNDO_DOWN'));
    expect(d.run.state).toBe(RunState.CompensationFailed);
    expect(d.run.compensationQueue).toEqual(['b', 'a']);
    return d;
  }

  describe('retry_step on a failed run', () => {
    it('runs the failed step again as attempt n+1 with a fresh retry budget and the same idempotency key; the run goes on', () => {
      const d = failedRun();
      const failedAt = d.run.endedAt;
      expect(failedAt).toBeDefined();
      const retried = d.tick(1_000).retryStep('b');
      expect(retried.ignored).toBeUndefined();
      expect(d.run.state).toBe(RunState.Running);
      expect(d.run.error).toBeUndefined();
      expect(d.run.endedAt).toBeUndefined();
      expect(eventsOf(retried).map((e) => [e.type, e.step, e.attempt, e.payload['state']])).toEqual([
        [EventType.StepRetrying, 'b', 2, RunState.Running],
        [EventType.StepStarted, 'b', 3, RunState.Running],
      ]);
      expect(eventsOf(retried)[0]?.payload).toMatchObject({ operator: true, error: { code: 'FLAKY' } });
      expect(commandsOf(retried).map((c) => [c.envelope.id, c.payload.idempotencyKey])).toEqual([
        ['tx-1:b:3', 'tx-1:b'],
      ]);
      expect(d.step('b')).toMatchObject({ status: StepStatus.Running, attempt: 3, attemptBase: 2 });
      expect(d.step('b').attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);

      // A fresh budget: attempt 3 is the series' first, so it may be retried once more, with the
      // first backoff delay again, and the timer carries the absolute attempt number.
      const third = d.fail('b', failure('FLAKY'));
      expect(d.step('b').status).toBe(StepStatus.Retrying);
      expect(schedulesOf(third).map((t) => [t.id, t.dueAt])).toEqual([['tx-1:retry:b:4', d.now + 10]]);
      // Results of the earlier series are late: ignored.
      expect(d.ok('b', {}, 2).ignored).toMatch(/late or duplicate/);
      d.fire({ kind: 'retry', step: 'b', attempt: 4 });
      d.fail('b', failure('FLAKY'));
      expect(d.run.state).toBe(RunState.Failed);

      // Again: attempt 5 succeeds and the workflow goes on to c.
      d.retryStep('b');
      const done = d.ok('b', { v: 5 });
      expect(lastWorkers(d)).toEqual(['w.c']);
      expect(commandsOf(done)[0]?.payload.input).toMatchObject({ a: 1, bResult: { v: 5 } });
      d.ok('c', {});
      expect(d.run.state).toBe(RunState.Completed);
      expect(d.step('b')).toMatchObject({ status: StepStatus.Completed, attempt: 5, attemptBase: 4 });
      const ids = d.commands().map((c) => c.envelope.id);
      expect(ids).toEqual([
        'tx-1:a:1',
        'tx-1:b:1',
        'tx-1:b:2',
        'tx-1:b:3',
        'tx-1:b:4',
        'tx-1:b:5',
        'tx-1:c:1',
      ]);
      expect(new Set(d.commands().map((c) => c.payload.idempotencyKey))).toEqual(
        new Set(['tx-1:a', 'tx-1:b', 'tx-1:c']),
      );
    });

    it('retries or skips a parallel step whose own condition failed (no step inside it did)', () => {
      const fan = (): ReturnType<typeof drive> => {
        const d = drive(
          workflow([
            {
              name: 'fan',
              kind: 'parallel',
              when: 'context.flag',
              branches: [[task('x', 'w.x')], [task('y', 'w.y')]],
            },
            task('after', 'w.after'),
          ]),
        );
        d.start();
        expect(d.step('fan')).toMatchObject({
          status: StepStatus.Failed,
          error: { code: 'EXPRESSION_ERROR' },
        });
        expect(d.run.state).toBe(RunState.Failed);
        return d;
      };
      const skipped = fan();
      skipped.skipStep('fan');
      expect(skipped.step('fan').status).toBe(StepStatus.Skipped);
      expect(skipped.run.state).toBe(RunState.Running);
      expect(lastWorkers(skipped)).toEqual(['w.after']);

      // Retried, its condition is evaluated again (still failing here: failed again, not stuck).
      const retried = fan();
      retried.retryStep('fan');
      expect(retried.step('fan')).toMatchObject({
        status: StepStatus.Failed,
        error: { code: 'EXPRESSION_ERROR' },
      });
      expect(retried.run.state).toBe(RunState.Failed);
    });

    it('gives every step the failure stopped a new start: failed and cancelled branches, a parallel step, a sleep', () => {
      const d = drive(
        workflow([
          {
            name: 'fan',
            kind: 'parallel',
            branches: [
              [task('x', 'w.x')],
              [task('y', 'w.y')],
              [task('z', 'w.z', { retry: { maxAttempts: 3, initialDelayMs: 50 } })],
              [{ name: 'nap', kind: 'sleep', durationMs: 500 }],
            ],
          },
          task('after', 'w.after'),
        ]),
      );
      d.start();
      d.fail('z', failure('FLAKY'));
      expect(d.step('z').status).toBe(StepStatus.Retrying);
      d.fail('x', failure('BROKEN', { retryable: false }));
      // z's retry and the sleep are cancelled at once; y is still in flight, then fails too.
      expect(d.step('z').status).toBe(StepStatus.Cancelled);
      expect(d.step('nap').status).toBe(StepStatus.Cancelled);
      d.fail('y', failure('FLAKY'));
      expect(d.run.state).toBe(RunState.Failed);
      expect(d.step('fan').status).toBe(StepStatus.Failed);
      expect(d.step('y').status).toBe(StepStatus.Failed);

      const retried = d.retryStep('x');
      expect(d.run.state).toBe(RunState.Running);
      expect(d.step('fan').status).toBe(StepStatus.Running);
      expect(commandsOf(retried).map((c) => c.envelope.id)).toEqual(['tx-1:x:2', 'tx-1:y:2', 'tx-1:z:2']);
      expect(d.step('z')).toMatchObject({ attempt: 2, attemptBase: 1 });
      // The sleep starts over under a new timer id: a late firing of the old one is stale.
      expect(schedulesOf(retried).map((t) => t.id)).toContain('tx-1:sleep:nap:2');
      expect(d.step('nap')).toMatchObject({ status: StepStatus.Waiting, attempt: 1 });
      expect(d.fireStale({ kind: 'sleep', step: 'nap', attempt: 1 }).ignored).toBe('stale timer');
      d.ok('x', {});
      d.ok('y', {});
      d.ok('z', {});
      d.fire({ kind: 'sleep', step: 'nap', attempt: 2 });
      expect(lastWorkers(d)).toEqual(['w.after']);
      d.ok('after', {});
      expect(d.run.state).toBe(RunState.Completed);
      const ids = d.commands().map((c) => c.envelope.id);
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('waits again for a wait step that timed out, under a new timer id', () => {
      const d = drive(
        workflow([
          { name: 'approve', kind: 'wait', signal: 'approved', timeoutMs: 100, output: 'approval' },
          task('go', 'w.go'),
        ]),
      );
      d.start();
      d.fire({ kind: 'wait', step: 'approve', attempt: 1 });
      expect(d.run.state).toBe(RunState.Failed);
      const retried = d.retryStep('approve');
      expect(d.run.state).toBe(RunState.Waiting);
      expect(schedulesOf(retried).map((t) => t.id)).toEqual(['tx-1:wait:approve:2']);
      expect(d.fireStale({ kind: 'wait', step: 'approve', attempt: 1 }).ignored).toBe('stale timer');
      const signalled = d.signal('approved', { by: 'ops' });
      expect(unschedulesOf(signalled)).toEqual(['tx-1:wait:approve:2']);
      d.ok('go', {});
      expect(d.run.state).toBe(RunState.Completed);
      expect(d.run.context['approval']).toEqual({ by: 'ops' });
    });

    it('retries a step that failed with partial effects and no compensation: it is judged on its new outcome', () => {
      const d = drive(workflow([task('a', 'w.a')]));
      d.start();
      d.fail('a', failure('HALF', { retryable: false, partialEffects: true }));
      expect(d.run.state).toBe(RunState.Failed);
      expect(d.step('a')).toMatchObject({ partialEffects: true, completedSeq: 1 });
      d.retryStep('a');
      expect(d.step('a').partialEffects).toBeUndefined();
      expect(d.step('a').completedSeq).toBeUndefined();
      d.ok('a', {});
      expect(d.run.state).toBe(RunState.Completed);
      expect(d.step('a').completedSeq).toBe(2);
    });

    it('starts a fresh series without the partial effects an attempt of the old one declared', () => {
      const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 2 } })]));
      d.start();
      d.fail('a', failure('HALF', { partialEffects: true }));
      d.fire({ kind: 'retry', step: 'a', attempt: 2 });
      d.fail('a', failure('FLAKY'));
      expect(d.run.state).toBe(RunState.Failed); // no compensation: nothing to undo
      expect(d.step('a')).toMatchObject({ partialEffects: true, completedSeq: 1 });
      d.retryStep('a');
      expect(d.step('a').partialEffects).toBeUndefined();
      expect(d.step('a').completedSeq).toBeUndefined();
      d.fail('a', failure('FLAKY'));
      d.fire({ kind: 'retry', step: 'a', attempt: 4 });
      d.fail('a', failure('FLAKY'));
      expect(d.run.state).toBe(RunState.Failed);
      expect(d.step('a').partialEffects).toBeUndefined();
    });
  });

  describe('skip_step on a failed run', () => {
    it('marks the step skipped, records its output and goes on after it', () => {
      const d = failedRun();
      const skipped = d.skipStep('b', { manual: true });
      expect(eventsOf(skipped).map((e) => [e.type, e.step])).toEqual([
        [EventType.StepSkipped, 'b'],
        [EventType.StepStarted, 'c'],
      ]);
      expect(eventsOf(skipped)[0]?.payload).toMatchObject({ operator: true, state: RunState.Running });
      expect(d.step('b')).toMatchObject({
        status: StepStatus.Skipped,
        output: { manual: true },
        error: { code: 'FLAKY' },
      });
      expect(commandsOf(skipped).map((c) => [c.envelope.id, c.payload.input])).toEqual([
        ['tx-1:c:1', { a: 1, bResult: { manual: true } }],
      ]);
      d.ok('c', {});
      expect(d.run.state).toBe(RunState.Completed);
    });

    it('completes the run at once when the skipped step was the last one', () => {
      const d = drive(workflow([task('a', 'w.a', { retry: { maxAttempts: 1 } })]));
      d.start();
      d.fail('a', failure('NOPE'));
      const skipped = d.skipStep('a');
      expect(d.run.state).toBe(RunState.Completed);
      expect(d.run.endedAt).toBe(d.now);
      expect(d.step('a').output).toBeUndefined();
      expect(eventsOf(skipped).map((e) => e.type)).toEqual([
        EventType.StepSkipped,
        EventType.WorkflowCompleted,
      ]);
    });
  });

  describe('on a compensation_failed run', () => {
    it('retry_step of the failed compensation: compensating again, attempt n+1 with a fresh budget, then compensated', () => {
      const d = stuckRun();
      const retried = d.tick(1_000).retryStep('b');
      expect(d.run.state).toBe(RunState.Compensating);
      expect(d.run.endedAt).toBeUndefined();
      expect(eventsOf(retried).map((e) => [e.type, e.step, e.attempt])).toEqual([
        [EventType.WorkflowCompensating, undefined, undefined],
        [EventType.StepStarted, 'b', 2],
      ]);
      expect(eventsOf(retried)[0]?.payload).toMatchObject({
        operator: true,
        steps: ['b', 'a'],
        error: { code: 'NOPE' },
      });
      expect(
        commandsOf(retried).map((c) => [c.envelope.id, c.payload.idempotencyKey, c.payload.worker]),
      ).toEqual([['tx-1:b:undo:2', 'tx-1:b:undo', 'undo.b']]);
      expect(d.step('b')).toMatchObject({
        status: StepStatus.Compensating,
        compensation: { status: 'running', attempt: 2, attemptBase: 1 },
      });
      // The old attempt's result is late.
      expect(d.undoFailed('b', failure('UNDO_DOWN'), 1).ignored).toMatch(/late or duplicate/);
      // One attempt per series (maxAttempts 1): a failure sticks again.
      d.undoFailed('b', failure('UNDO_DOWN'));
      expect(d.run.state).toBe(RunState.CompensationFailed);
      d.retryStep('b');
      expect(commandsOf(d.last).map((c) => c.envelope.id)).toEqual(['tx-1:b:undo:3']);
      d.undone('b');
      expect(lastWorkers(d)).toEqual(['undo.a']);
      d.undone('a');
      expect(d.run.state).toBe(RunState.Compensated);
      expect(d.step('b').compensation?.attempts.map((a) => [a.attempt, a.outcome])).toEqual([
        [1, 'failed'],
        [2, 'failed'],
        [3, 'completed'],
      ]);
    });

    it('resume_compensation retries it the same way; a run a cancel was unwinding goes back to cancelling', () => {
      const d = stuckRun(true);
      expect(d.run.cancelRequested).toBe(true);
      d.resumeCompensation();
      expect(d.run.state).toBe(RunState.Cancelling);
      expect(commandsOf(d.last).map((c) => c.envelope.id)).toEqual(['tx-1:b:undo:2']);
      d.undone('b');
      d.undone('a');
      expect(d.run.state).toBe(RunState.Cancelled);
    });

    it('skip_step (or resume_compensation with skip) marks the compensation skipped and unwinds the rest', () => {
      for (const skip of [
        (d: SagaDriver) => d.skipStep('b'),
        (d: SagaDriver) => d.resumeCompensation(true),
      ]) {
        const d = stuckRun();
        const skipped = skip(d);
        expect(d.run.state).toBe(RunState.Compensating);
        expect(d.run.compensationQueue).toEqual(['a']);
        expect(d.step('b')).toMatchObject({
          status: StepStatus.CompensationFailed,
          compensation: { status: 'skipped', attempt: 1, error: { code: 'UNDO_DOWN' } },
        });
        expect(eventsOf(skipped).map((e) => [e.type, e.step])).toEqual([
          [EventType.StepSkipped, 'b'],
          [EventType.WorkflowCompensating, undefined],
          [EventType.StepStarted, 'a'],
        ]);
        expect(eventsOf(skipped)[0]?.payload).toMatchObject({ operator: true, compensation: true });
        expect(commandsOf(skipped).map((c) => c.envelope.id)).toEqual(['tx-1:a:undo:1']);
        d.undone('a');
        expect(d.run.state).toBe(RunState.Compensated);
        expect(d.commands().filter((c) => c.payload.worker === 'undo.b')).toHaveLength(1);
      }
    });

    it('skipping the last compensation left ends the run at once', () => {
      const d = stuckRun();
      d.retryStep('b');
      d.undone('b');
      d.undoFailed('a', failure('GONE', { retryable: false }));
      expect(d.run.state).toBe(RunState.CompensationFailed);
      expect(d.run.compensationQueue).toEqual(['a']);
      const skipped = d.resumeCompensation(true);
      expect(d.run.state).toBe(RunState.Compensated);
      expect(d.run.endedAt).toBe(d.now);
      expect(eventsOf(skipped).map((e) => e.type)).toEqual([
        EventType.StepSkipped,
        EventType.WorkflowCompensating,
        EventType.WorkflowCompensated,
      ]);
    });
  });

  describe('refusals: the engine ignores the action and changes nothing', () => {
    function expectIgnored(d: SagaDriver, act: (d: SagaDriver) => unknown, reason: RegExp): void {
      const before = d.run;
      const decision = act(d) as ReturnType<SagaDriver['send']>;
      expect(decision.ignored).toMatch(reason);
      expect(decision.run).toBe(before);
      expect(decision.commands).toEqual([]);
      expect(decision.lifecycle).toEqual([]);
    }
    const ALL_ACTIONS: [string, (d: SagaDriver) => unknown][] = [
      ['retry_step', (d) => d.retryStep('a')],
      ['skip_step', (d) => d.skipStep('a')],
      ['resume_compensation', (d) => d.resumeCompensation()],
      ['resume_compensation skip', (d) => d.resumeCompensation(true)],
    ];

    it('on a run in any state but failed or compensation_failed', () => {
      const pending = drive(STUCK);
      const running = drive(STUCK);
      running.start();
      const compensating = drive(STUCK);
      compensating.start();
      compensating.ok('a', {});
      compensating.fail('b', failure('NOPE', { retryable: false }));
      const completed = drive(workflow([task('a', 'w.a')]));
      completed.start();
      completed.ok('a', {});
      const compensated = stuckRun();
      compensated.resumeCompensation(true);
      compensated.undone('a');
      const cancelled = drive(workflow([task('a', 'w.a')]));
      cancelled.cancel();
      const cases: [SagaDriver, RunState][] = [
        [pending, RunState.Pending],
        [running, RunState.Running],
        [compensating, RunState.Compensating],
        [completed, RunState.Completed],
        [compensated, RunState.Compensated],
        [cancelled, RunState.Cancelled],
      ];
      for (const [d, state] of cases) {
        expect(d.run.state).toBe(state);
        for (const [, act] of ALL_ACTIONS) {
          expectIgnored(d, act, new RegExp(`^run is ${state}: operator actions apply`));
        }
      }
    });

    it('an unknown step', () => {
      expectIgnored(failedRun(), (d) => d.retryStep('nope'), /^unknown step nope$/);
      expectIgnored(failedRun(), (d) => d.skipStep('nope'), /^unknown step nope$/);
      expectIgnored(stuckRun(), (d) => d.retryStep('nope'), /^unknown step nope$/);
    });

    it('a step that did not fail, or a parallel step, on a failed run', () => {
      expectIgnored(failedRun(), (d) => d.retryStep('a'), /^step a is completed, not failed$/);
      expectIgnored(failedRun(), (d) => d.skipStep('c'), /^step c is pending, not failed$/);
      const d = drive(
        workflow([
          { name: 'fan', kind: 'parallel', branches: [[task('x', 'w.x', { retry: { maxAttempts: 1 } })]] },
        ]),
      );
      d.start();
      d.fail('x', failure('NOPE'));
      expect(d.step('fan').status).toBe(StepStatus.Failed);
      expectIgnored(d, (d) => d.retryStep('fan'), /parallel step: retry or skip the failed step inside it/);
      expectIgnored(d, (d) => d.skipStep('fan'), /parallel step/);
    });

    it('resume_compensation on a failed run', () => {
      expectIgnored(failedRun(), (d) => d.resumeCompensation(), /^run is failed: no compensation failed$/);
      expectIgnored(failedRun(), (d) => d.resumeCompensation(true), /no compensation failed/);
    });

    it('a step other than the failed compensation on a compensation_failed run', () => {
      expectIgnored(
        stuckRun(),
        (d) => d.retryStep('a'),
        /compensation of step a did not fail: the failed one is b's/,
      );
      expectIgnored(stuckRun(), (d) => d.skipStep('c'), /compensation of step c did not fail/);
    });

    it('every other event on a terminal run is still ignored', () => {
      const d = failedRun();
      for (const act of [
        (d: SagaDriver) => d.ok('b', {}, 2),
        (d: SagaDriver) => d.signal('go'),
        (d: SagaDriver) => d.cancel(),
        (d: SagaDriver) => d.start(),
        (d: SagaDriver) => d.fireStale({ kind: 'retry', step: 'b', attempt: 2 }),
      ]) {
        expectIgnored(d, act, /^run is failed$/);
      }
    });
  });

  describe('operator transitions', () => {
    const ALL = Object.values(RunState);
    const OPERATOR_EDGES: [RunState, RunState][] = [
      [RunState.Failed, RunState.Running],
      [RunState.CompensationFailed, RunState.Compensating],
      [RunState.CompensationFailed, RunState.Cancelling],
    ];

    it('are the only ways out of a terminal state, kept apart from the normal table', () => {
      for (const from of ALL) {
        for (const to of ALL) {
          const allowed = OPERATOR_EDGES.some(([f, t]) => f === from && t === to);
          expect([from, to, canOperatorTransition(from, to)]).toEqual([from, to, allowed]);
          if (allowed) expect(canTransition(from, to)).toBe(false);
          if (!allowed) expect(() => assertOperatorTransition(from, to, TX)).toThrow(IllegalTransitionError);
        }
      }
      for (const [from, to] of OPERATOR_EDGES) expect(() => assertOperatorTransition(from, to)).not.toThrow();
    });

    it('every state a retried run goes through is reached by an allowed transition', () => {
      const d = stuckRun();
      d.retryStep('b');
      d.undone('b');
      d.undone('a');
      const states = [RunState.Pending, ...d.events().map((e) => e.payload['state'] as RunState)];
      const distinct = states.filter((s, i) => i === 0 || s !== states[i - 1]);
      expect(distinct).toEqual([
        RunState.Pending,
        RunState.Running,
        RunState.Compensating,
        RunState.CompensationFailed,
        RunState.Compensating,
        RunState.Compensated,
      ]);
      for (let i = 1; i < distinct.length; i++) {
        const [from, to] = [distinct[i - 1]!, distinct[i]!];
        expect(canTransition(from, to) || canOperatorTransition(from, to)).toBe(true);
      }
    });
  });
});
