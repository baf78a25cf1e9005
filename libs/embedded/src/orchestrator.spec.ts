/**
 * The orchestrator shell (libs/core) over the memory backend: what a user of the embedded mode
 * relies on — commands sent again when their results do not come, compare-and-set between two
 * writers, durable timers, idempotent starts, and clear errors for bad input.
 */
import {
  ErrorCode,
  EventType,
  ResourceExhaustedError,
  Topics,
  type Envelope,
  type Run,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { createMemoryBackend, type MemoryRunStore } from '@multiagents/memory';
import {
  MAX_BUFFERED_SIGNALS,
  Orchestrator,
  WorkflowBuilder,
  type EventBus,
  type RunStore,
  type Transition,
} from '@multiagents/core';
import { ManualClock, waitFor } from '@multiagents/testing';
import { defineWorker, WorkerManager } from '@multiagents/worker-sdk';
import { defaultMaxActiveRuns, startEmbedded } from './embedded-stack';
import { twoSteps, twoStepWorkers } from './test-two-steps';

describe('Orchestrator over the memory adapters', () => {
  it('runs a saga to completion and compensates a failure, its commands handed over without the bus', async () => {
    const calls: string[] = [];
    const stack = await startEmbedded({ workers: twoStepWorkers(calls, true), definitions: [twoSteps] });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('two_steps', {});
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('compensated');
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`, `${txId}:first:undo`]);
      // Eager dispatch (the default): see eager-dispatch.spec.ts.
      expect(stack.orchestrator.stats.localDispatched).toBe(3);
      expect(stack.workerManager.counters).toMatchObject({ delivered: 3, local: 3 });
    } finally {
      await stack.close();
    }
  });

  it('returns the same run for the same idempotency key and refuses it with another input', async () => {
    const stack = await startEmbedded({ workers: twoStepWorkers([]), definitions: [twoSteps] });
    try {
      const a = await stack.orchestrator.startWorkflow('two_steps', { n: 1 }, { idempotencyKey: 'k' });
      const b = await stack.orchestrator.startWorkflow('two_steps', { n: 1 }, { idempotencyKey: 'k' });
      expect(b).toEqual({ txId: a.txId, created: false });
      await expect(
        stack.orchestrator.startWorkflow('two_steps', { n: 2 }, { idempotencyKey: 'k' }),
      ).rejects.toMatchObject({
        code: ErrorCode.AlreadyExists,
      });
      expect((await stack.runs.list({}, 10)).runs).toHaveLength(1);
    } finally {
      await stack.close();
    }
  });

  it('refuses bad input with clear errors and stores nothing', async () => {
    const stack = await startEmbedded({
      workers: twoStepWorkers([]),
      definitions: [twoSteps],
      orchestrator: { maxPayloadBytes: 1024 },
    });
    try {
      const o = stack.orchestrator;
      await expect(o.startWorkflow('nope', {})).rejects.toMatchObject({ code: ErrorCode.NotFound });
      await expect(o.startWorkflow('two_steps', [1, 2])).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
      });
      await expect(o.startWorkflow('two_steps', { big: 'x'.repeat(2048) })).rejects.toMatchObject({
        code: ErrorCode.ResourceExhausted,
      });
      await expect(o.getRun('missing')).rejects.toMatchObject({ code: ErrorCode.NotFound });
      await expect(o.signal('missing', 's')).rejects.toMatchObject({ code: ErrorCode.NotFound });
      await expect(
        o.registerWorkflow({
          id: 'bad',
          version: 1,
          steps: [{ name: 'a', kind: 'task', worker: 'w.unknown' }],
        }),
      ).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
        message: expect.stringMatching(/unknown worker/),
      });
      expect((await stack.runs.list({}, 10)).runs).toHaveLength(0);

      const { txId } = await o.startWorkflow('two_steps', {});
      await o.waitForTerminal(txId, { timeoutMs: 4_000 });
      await expect(o.signal(txId, 'late')).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
      await expect(o.cancel(txId)).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
    } finally {
      await stack.close();
    }
  });

  it('refuses an early signal past its buffer instead of dropping it', async () => {
    const waits = new WorkflowBuilder('two_waits').wait('first', 'go').wait('then', 'later').build();
    const stack = await startEmbedded({ workers: twoStepWorkers([]), definitions: [waits] });
    try {
      const o = stack.orchestrator;
      const { txId } = await o.startWorkflow('two_waits', {});
      // Nothing waits for 'later' yet: each is kept for the step that will.
      for (let i = 0; i < MAX_BUFFERED_SIGNALS; i++) await o.signal(txId, 'later', { i });
      await expect(o.signal(txId, 'later', { i: MAX_BUFFERED_SIGNALS })).rejects.toMatchObject({
        code: ErrorCode.ResourceExhausted,
        message: expect.stringMatching(/signal later of run .* refused: signal buffer for "later" is full/),
      });
      expect((await o.getRun(txId)).signals['later']).toHaveLength(MAX_BUFFERED_SIGNALS);
    } finally {
      await stack.close();
    }
  });

  it('refuses an input that does not match the inputSchema, listing every problem, before any step', async () => {
    const calls: string[] = [];
    const schemaFlow = new WorkflowBuilder('with_schema')
      .step('first', 'w.first', { compensation: 'w.undo_first' })
      .inputSchema({
        type: 'object',
        required: ['orderId', 'total'],
        properties: { orderId: { type: 'string' }, total: { type: 'number' } },
      })
      .build();
    const stack = await startEmbedded({ workers: twoStepWorkers(calls), definitions: [schemaFlow] });
    try {
      await expect(stack.orchestrator.startWorkflow('with_schema', { total: 'x' })).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
        problems: ["input must have required property 'orderId'", 'input.total must be number'],
      });
      expect((await stack.runs.list({}, 10)).runs).toHaveLength(0);
      expect(calls).toEqual([]);
      const { txId } = await stack.orchestrator.startWorkflow('with_schema', { orderId: 'o-1', total: 2 });
      expect((await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
    } finally {
      await stack.close();
    }
  });

  it('fails a step nobody takes with NO_WORKER after its schedule-to-start timeout, and compensates', async () => {
    const calls: string[] = [];
    const orphan = new WorkflowBuilder('orphan')
      .step('first', 'w.first', { compensation: 'w.undo_first' })
      .step('second', 'w.nobody', { scheduleToStartTimeoutMs: 50 })
      .build();
    const stack = await startEmbedded({
      workers: twoStepWorkers(calls),
      definitions: [],
      orchestrator: { timerPollIntervalMs: 10, knownWorkers: () => undefined },
    });
    try {
      await stack.orchestrator.registerWorkflow(orphan);
      const { txId } = await stack.orchestrator.startWorkflow('orphan', {});
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('compensated');
      expect(run.steps['second']?.error?.code).toBe(ErrorCode.NoWorker);
      expect(calls).toEqual([`${txId}:first`, `${txId}:first:undo`]);
    } finally {
      await stack.close();
    }
  });

  it('a taken command says so at once: a slow step with a schedule-to-start timeout is not failed', async () => {
    const slow = new WorkflowBuilder('slow').step('work', 'w.slow', { scheduleToStartTimeoutMs: 30 }).build();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const stack = await startEmbedded({
      workers: [defineWorker('w.slow', async () => (await gate, { done: true }))],
      definitions: [slow],
      orchestrator: { timerPollIntervalMs: 5 },
    });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('slow', {});
      await waitFor(
        async () =>
          (await stack.orchestrator.getRun(txId)).steps['work']?.attempts[0]?.pickedUpAt !== undefined,
      );
      const sentAt = (await stack.orchestrator.getRun(txId)).steps['work']?.attempts[0]?.startedAt ?? 0;
      // Long past the 30 ms deadline (and many timer polls later) the step still runs.
      await waitFor(() => Date.now() > sentAt + 200, { timeoutMs: 2_000 });
      expect((await stack.orchestrator.getRun(txId)).steps['work']?.status).toBe('running');
      release();
      expect((await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
    } finally {
      await stack.close();
    }
  });

  it('dead-letters a forged result and keeps consuming the ones behind it', async () => {
    const calls: string[] = [];
    const stack = await startEmbedded({ workers: twoStepWorkers(calls), definitions: [twoSteps] });
    try {
      const forged: Envelope = {
        id: 'forged-1',
        type: EventType.StepResult,
        txId: 'someone-else',
        workflowId: 'two_steps',
        step: 'first',
        attempt: 1,
        time: Date.now(),
        headers: {},
        payload: { commandId: 'not-this-run:first:1', worker: 'w.first', ok: true, output: {} },
      };
      await stack.bus.publish(Topics.results, [forged]);
      await stack.bus.publishRaw(Topics.results, new Uint8Array([1, 2, 3, 250]));
      const { txId } = await stack.orchestrator.startWorkflow('two_steps', {});
      expect((await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
      await waitFor(async () => (await stack.bus.listDeadLetters(Topics.results)).length === 2);
      const letters = await stack.bus.listDeadLetters(Topics.results);
      expect(letters.map((l) => l.error).join('\n')).toMatch(/commandId does not belong/);
    } finally {
      await stack.close();
    }
  });

  it('counts a duplicate result and applies it once', async () => {
    const calls: string[] = [];
    const stack = await startEmbedded({ workers: twoStepWorkers(calls), definitions: [twoSteps] });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('two_steps', {});
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 });
      const duplicate: Envelope = {
        id: `${txId}:first:1:result`,
        type: EventType.StepResult,
        txId,
        workflowId: 'two_steps',
        step: 'first',
        attempt: 1,
        time: Date.now(),
        headers: {},
        payload: { commandId: `${txId}:first:1`, worker: 'w.first', ok: true, output: { first: 'again' } },
      };
      const before = stack.orchestrator.stats.ignoredResults;
      await stack.bus.publish(Topics.results, [duplicate]);
      await waitFor(() => stack.orchestrator.stats.ignoredResults === before + 1);
      expect((await stack.orchestrator.getRun(txId)).context).toEqual(run.context);
    } finally {
      await stack.close();
    }
  });
});

describe('Orchestrator.onRunMoved (what other processes move)', () => {
  /** A transition another orchestrator committed, as its lifecycle event. */
  const movedElsewhere = (txId: string): Envelope => ({
    id: `${txId}:v3`,
    type: EventType.WorkflowTransitioned,
    txId,
    workflowId: 'two_steps',
    time: Date.now(),
    headers: {},
    payload: { version: 3, state: 'running', events: [] },
  });

  it('says when its tail has opened, and announces what moves after', async () => {
    const stack = await startEmbedded({ workers: twoStepWorkers([]), definitions: [twoSteps] });
    try {
      const moved: string[] = [];
      const opened = jest.fn();
      const stop = stack.orchestrator.onRunMoved((txId) => moved.push(txId), opened);
      await waitFor(() => opened.mock.calls.length === 1);
      await stack.bus.publish(Topics.events, [movedElsewhere('tx-elsewhere')]);
      await waitFor(() => moved.includes('tx-elsewhere'));
      stop();
      expect(opened).toHaveBeenCalledTimes(1);
    } finally {
      await stack.close();
    }
  });

  it('a tail that failed to open late leaves the feed opened after it alone', async () => {
    const stack = await startEmbedded({ workers: twoStepWorkers([]), definitions: [twoSteps] });
    const tail = jest.spyOn(stack.bus, 'tail');
    try {
      let failFirst: (err: Error) => void = () => undefined;
      tail.mockImplementationOnce(() => new Promise((_, reject) => (failFirst = reject)));
      // The first feed is still opening when its only listener leaves; a second listener opens another.
      stack.orchestrator.onRunMoved(() => undefined)();
      const opened = jest.fn();
      const stop = stack.orchestrator.onRunMoved(() => undefined, opened);
      await waitFor(() => opened.mock.calls.length === 1);
      failFirst(new Error('broker away'));
      await new Promise((resolve) => setImmediate(resolve));
      // Still the feed: a third listener shares it, and no other tail is opened.
      const moved: string[] = [];
      const stopThird = stack.orchestrator.onRunMoved((txId) => moved.push(txId));
      expect(tail).toHaveBeenCalledTimes(2);
      await stack.bus.publish(Topics.events, [movedElsewhere('tx-elsewhere')]);
      await waitFor(() => moved.includes('tx-elsewhere'));
      stop();
      stopThird();
    } finally {
      tail.mockRestore();
      await stack.close();
    }
    // Closed: nothing opens a tail any more.
    const after = jest.spyOn(stack.bus, 'tail');
    stack.orchestrator.onRunMoved(() => undefined)();
    expect(after).not.toHaveBeenCalled();
    after.mockRestore();
  });
});

describe('Orchestrator crash and concurrency semantics', () => {
  function parts(clock = new ManualClock()) {
    const backend = createMemoryBackend({ clock });
    return { clock, bus: backend.bus, runs: backend.runs, definitions: backend.definitions };
  }

  /** A run store whose first writes lose their commands, like a broker that forgot them. */
  function forgetful(runs: MemoryRunStore, forget: number): RunStore {
    let left = forget;
    const drop = (t: Transition): Transition => {
      if (left <= 0 || t.commands.length === 0) return t;
      left--;
      return { ...t, commands: [] };
    };
    const wrapped = Object.create(runs) as RunStore;
    wrapped.create = (t) => runs.create(drop(t));
    wrapped.commit = (expected, t) => runs.commit(expected, drop(t));
    return wrapped;
  }

  it('sends a command again, same id, when its result does not come in time', async () => {
    const p = parts();
    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: twoStepWorkers(calls) });
    await manager.start();
    const o = new Orchestrator({
      ...p,
      runs: forgetful(p.runs, 1),
      timerPollIntervalMs: 0,
      redispatchAfterMs: 10_000,
      recoverySweepIntervalMs: 0,
    });
    await o.start();
    try {
      await o.registerWorkflow(twoSteps);
      const { txId } = await o.startWorkflow('two_steps', {}); // saved; its command is lost
      expect(await o.redispatchOverdue()).toBe(0); // not overdue yet
      p.clock.advance(10_000);
      expect(await o.redispatchOverdue()).toBe(1);
      const run = await o.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('completed');
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`]);
      expect(o.stats.redispatched).toBe(1);
      p.clock.advance(60_000);
      expect(await o.redispatchOverdue()).toBe(0); // answered commands are forgotten
    } finally {
      await manager.close();
      await o.close();
    }
  });

  it('sends every awaited command again at once when the broker comes back', async () => {
    const p = parts();
    let restored: (() => void) | undefined;
    const bus = Object.create(p.bus) as EventBus;
    bus.onRestored = (listener: () => void) => {
      restored = listener;
      return () => (restored = undefined);
    };
    const o = new Orchestrator({
      ...p,
      bus,
      runs: forgetful(p.runs, 1),
      timerPollIntervalMs: 0,
      redispatchAfterMs: 60_000,
      recoverySweepIntervalMs: 0,
    });
    await o.start();
    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: twoStepWorkers(calls) });
    try {
      await o.registerWorkflow(twoSteps);
      const { txId } = await o.startWorkflow('two_steps', {});
      await manager.start();
      expect(restored).toBeDefined();
      restored?.();
      const run = await o.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('completed');
      expect(o.stats.redispatched).toBe(1);
    } finally {
      await manager.close();
      await o.close();
    }
  });

  it('a recovery sweep finds a run whose writer died before sending its command', async () => {
    const p = parts();
    const dead = new Orchestrator({ ...p, runs: forgetful(p.runs, 1), timerPollIntervalMs: 0 });
    await dead.registerWorkflow(twoSteps);
    const { txId } = await dead.startWorkflow('two_steps', { n: 1 }); // saved, command lost, writer gone
    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: twoStepWorkers(calls) });
    await manager.start();
    // What the sweep asks the store for: a young run is left out by the store, never read.
    const listed: string[] = [];
    const runs = Object.create(p.runs) as RunStore;
    runs.list = async (filter, limit, cursor) => {
      const page = await p.runs.list(filter, limit, cursor);
      listed.push(...page.runs.map((run) => run.txId));
      return page;
    };
    const survivor = new Orchestrator({
      ...p,
      runs,
      timerPollIntervalMs: 0,
      redispatchAfterMs: 30_000,
      recoverySweepIntervalMs: 0,
    });
    await survivor.start();
    try {
      expect(await survivor.sweep()).toBe(0); // idle for less than redispatchAfterMs: left alone
      expect(listed).toEqual([]);
      p.clock.advance(30_000);
      expect(await survivor.sweep()).toBe(1);
      expect(listed).toEqual([txId]);
      const run = await survivor.waitForTerminal(txId, { timeoutMs: 4_000, pollIntervalMs: 20 });
      expect(run.state).toBe('completed');
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`]);
    } finally {
      await manager.close();
      await survivor.close();
    }
  });

  it('a recovery sweep that cannot build a lost command again (a branch changed what its input reads) fails the attempt instead of waiting for ever', async () => {
    const p = parts();
    // a reads context.order.id; b, in the other branch, replaces order with a string.
    const split: WorkflowDefinition = {
      id: 'split',
      version: 1,
      steps: [
        {
          name: 'p',
          kind: 'parallel',
          branches: [
            [{ name: 'a', kind: 'task', worker: 'w.a', input: { id: 'context.order.id' } }],
            [{ name: 'b', kind: 'task', worker: 'w.b', compensation: 'w.undo_b' }],
          ],
        },
      ],
    };
    // The writer dies after its write: a's command is never sent, b's is.
    const losing = Object.create(p.runs) as RunStore;
    const dropA = (t: Transition): Transition => ({
      ...t,
      commands: t.commands.filter((c) => c.payload.worker !== 'w.a'),
    });
    losing.create = (t) => p.runs.create(dropA(t));
    losing.commit = (expected, t) => p.runs.commit(expected, dropA(t));
    const dead = new Orchestrator({ ...p, runs: losing, timerPollIntervalMs: 0 });
    await dead.registerWorkflow(split);
    const { txId } = await dead.startWorkflow('split', { order: { id: 'o-1' } });
    const calls: string[] = [];
    const worker = (name: string, output: unknown) =>
      defineWorker(name, (_input, ctx) => {
        calls.push(ctx.idempotencyKey);
        return output;
      });
    const manager = new WorkerManager({
      bus: p.bus,
      workers: [worker('w.a', {}), worker('w.b', { order: 'replaced' }), worker('w.undo_b', {})],
    });
    await manager.start();
    const survivor = new Orchestrator({
      ...p,
      timerPollIntervalMs: 0,
      redispatchAfterMs: 30_000,
      recoverySweepIntervalMs: 0,
    });
    await survivor.start();
    try {
      await waitFor(async () => (await survivor.getRun(txId)).steps['b']?.status === 'completed', {
        description: "b's result applied",
      });
      p.clock.advance(30_000);
      expect(await survivor.sweep()).toBe(1);
      const run = await survivor.waitForTerminal(txId, { timeoutMs: 4_000, pollIntervalMs: 20 });
      expect(run.state).toBe('compensated');
      expect(run.steps['a']?.error).toMatchObject({ code: 'EXPRESSION_ERROR', retryable: false });
      expect(calls).toEqual([`${txId}:b`, `${txId}:b:undo`]);
      expect(survivor.stats).toMatchObject({ unsendableCommands: 1, redispatched: 0 });
    } finally {
      await manager.close();
      await survivor.close();
    }
  });

  it('names the workers of a definition that no live worker-manager replica hosts', async () => {
    const backend = createMemoryBackend();
    const o = new Orchestrator({ ...backend, timerPollIntervalMs: 0 });
    const now = Date.now();
    await backend.registry.announce(
      { managerId: 'wm-1', workers: ['w.first', 'w.undo_first'], capacity: 4, inFlight: 0, seenAt: now },
      60_000,
    );
    await backend.registry.announce(
      { managerId: 'wm-gone', workers: ['w.second'], capacity: 4, inFlight: 0, seenAt: now - 120_000 },
      60_000,
    );
    expect(await o.unhostedWorkers(twoSteps)).toEqual(['w.second']);
    expect((await o.listWorkerManagers()).map((m) => m.managerId)).toEqual(['wm-1']);
  });

  it('refuses a stale writer: a commit on an old revision changes nothing', async () => {
    const p = parts();
    const a = new Orchestrator({ ...p, consumerName: 'a', timerPollIntervalMs: 0 });
    await a.registerWorkflow(twoSteps);
    const { txId } = await a.startWorkflow('two_steps', {});
    const stored = (await p.runs.get(txId))!;
    const write = (run: Run): Transition => ({
      run,
      changedSteps: [],
      commands: [],
      schedule: [],
      cancel: [],
    });
    // Writer B loaded version 1 and then paused; A applies a change meanwhile.
    expect(
      await p.runs.commit(stored, write({ ...stored.run, updatedAt: stored.run.updatedAt + 1 })),
    ).toEqual({
      version: 2,
      revision: '2',
    });
    // B wakes up and tries to write on version 1: refused, nothing changes.
    expect(await p.runs.commit(stored, write({ ...stored.run, state: 'failed' }))).toBeUndefined();
    expect((await p.runs.get(txId))?.run.state).toBe('running');
  });

  it('fires durable timers on the clock: a retry after backoff, then success', async () => {
    const p = parts();
    const flaky = new WorkflowBuilder('flaky')
      .step('call', 'w.flaky', { retry: { maxAttempts: 3, initialDelayMs: 1_000, backoffCoefficient: 2 } })
      .build();
    let attempts = 0;
    const manager = new WorkerManager({
      bus: p.bus,
      workers: [
        defineWorker('w.flaky', () => {
          attempts++;
          if (attempts < 3) throw new Error('flaky');
          return { ok: true };
        }),
      ],
    });
    await manager.start();
    const o = new Orchestrator({ ...p, timerPollIntervalMs: 0 });
    await o.start();
    try {
      await o.registerWorkflow(flaky);
      const { txId } = await o.startWorkflow('flaky', {});
      await waitFor(async () => (await o.getRun(txId)).steps['call']?.status === 'retrying');
      expect(await o.fireDueTimers()).toBe(0); // not due yet
      p.clock.advance(1_000);
      expect(await o.fireDueTimers()).toBe(1);
      await waitFor(async () => (await o.getRun(txId)).steps['call']?.attempt === 2 && attempts === 2);
      await waitFor(async () => (await o.getRun(txId)).steps['call']?.status === 'retrying');
      p.clock.advance(1_999);
      expect(await o.fireDueTimers()).toBe(0); // second backoff is 2,000 ms
      p.clock.advance(1);
      expect(await o.fireDueTimers()).toBe(1);
      const run = await o.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('completed');
      expect(run.steps['call']?.attempts.map((x) => x.outcome)).toEqual(['failed', 'failed', 'completed']);
    } finally {
      await manager.close();
      await o.close();
    }
  });

  it('keeps an early signal and delivers it when the wait step is reached', async () => {
    const p = parts();
    const approval = new WorkflowBuilder('approval')
      .sleep('cool_off', 5_000)
      .wait('approve', 'approved', { output: 'approval' })
      .build();
    const o = new Orchestrator({ ...p, timerPollIntervalMs: 0 });
    await o.start();
    try {
      await o.registerWorkflow(approval);
      const { txId } = await o.startWorkflow('approval', {});
      expect((await o.getRun(txId)).state).toBe('waiting');
      await o.signal(txId, 'approved', { by: 'ops' });
      p.clock.advance(5_000);
      await o.fireDueTimers();
      const run = await o.getRun(txId);
      expect(run.state).toBe('completed');
      expect(run.context).toEqual({ approval: { by: 'ops' } });
    } finally {
      await o.close();
    }
  });

  it('moves runs of a definition it registered without reading or compiling it again', async () => {
    const p = parts();
    const read: string[] = [];
    const definitions = Object.create(p.definitions) as typeof p.definitions;
    definitions.get = (id, version) => {
      if (version !== undefined) read.push(`${id}@${version}`);
      return p.definitions.get(id, version);
    };
    const flow = new WorkflowBuilder('cooling').sleep('cool_off', 1_000).build();
    // `service` registers the definition at its start; the runs are started elsewhere (an API
    // client's process), so the first event `service` sees of a run is its first timer or result.
    const service = new Orchestrator({ ...p, definitions, timerPollIntervalMs: 0 });
    const starter = new Orchestrator({ ...p, timerPollIntervalMs: 0 });
    await service.registerWorkflow(flow);
    const { txId } = await starter.startWorkflow('cooling', {});
    p.clock.advance(1_000);
    expect(await service.fireDueTimers()).toBe(1);
    expect((await service.getRun(txId)).state).toBe('completed');
    expect(read).toEqual([]);
  });

  it('two orchestrators on one store: a stale cached copy is never trusted to ignore or overwrite', async () => {
    const p = parts();
    const flow = new WorkflowBuilder('handoff')
      .sleep('cool_off', 1_000)
      .wait('approve', 'approved', { timeoutMs: 500 })
      .build();
    const options = { ...p, timerPollIntervalMs: 0 };
    const a = new Orchestrator({ ...options, consumerName: 'a' });
    const b = new Orchestrator({ ...options, consumerName: 'b' });
    await a.registerWorkflow(flow);
    const { txId } = await a.startWorkflow('handoff', {}); // a caches the run: sleeping
    p.clock.advance(1_000);
    expect(await b.fireDueTimers()).toBe(1); // b moves it on: waiting for the signal, deadline +500
    p.clock.advance(500);
    // a claims the wait deadline; on its stale copy the timer looks stale, on the store it is due.
    expect(await a.fireDueTimers()).toBe(1);
    const run = await a.getRun(txId);
    expect(run.state).toBe('failed');
    expect(run.steps['approve']?.error?.code).toBe(ErrorCode.WaitTimeout);

    // And a write decided on a stale copy is refused by compare-and-set, then redone on a fresh read.
    const { txId: second } = await a.startWorkflow('handoff', {});
    p.clock.advance(1_000);
    await b.fireDueTimers();
    await b.signal(second, 'early-noise');
    const conflictsBefore = a.stats.casConflicts;
    await a.signal(second, 'approved', { ok: true });
    expect(a.stats.casConflicts).toBe(conflictsBefore + 1);
    expect((await a.getRun(second)).state).toBe('completed');
  });

  it('fails a step whose output makes its run too large to store, and compensates, instead of waiting for ever', async () => {
    const p = parts();
    // A store with a small limit on a run's step records, as a Redis or NATS value has one.
    const limited = Object.create(p.runs) as MemoryRunStore;
    limited.commit = (expected, transition) =>
      JSON.stringify(transition.run.steps).length > 4_000
        ? Promise.reject(new ResourceExhaustedError('the run record is too large', { maxBytes: 4_000 }))
        : p.runs.commit(expected, transition);
    const calls: string[] = [];
    const manager = new WorkerManager({
      bus: p.bus,
      workers: [
        ...twoStepWorkers(calls).filter((w) => w.name !== 'w.second'),
        defineWorker('w.second', () => ({ blob: 'x'.repeat(8_000) })),
      ],
    });
    await manager.start();
    const o = new Orchestrator({ ...p, runs: limited, timerPollIntervalMs: 0 });
    await o.start();
    try {
      await o.registerWorkflow(twoSteps);
      const { txId } = await o.startWorkflow('two_steps', {});
      const run = await o.waitForTerminal(txId, { timeoutMs: 10_000 });
      expect(run.state).toBe('compensated');
      expect(run.steps['second']?.error).toMatchObject({
        code: ErrorCode.ResourceExhausted,
        retryable: false,
      });
      expect(calls).toEqual([`${txId}:first`, `${txId}:first:undo`]);
      expect(o.stats.oversizedResults).toBe(1);
      expect(await p.bus.listDeadLetters(Topics.results)).toEqual([]);
    } finally {
      await manager.close();
      await o.close();
    }
  });

  it('waits out a store that fails for a while: results are redelivered, not dead-lettered', async () => {
    const p = parts();
    let failures = 7; // more deliveries than a bus's default maxDeliveries (5) allows
    const flakyStore = Object.create(p.runs) as MemoryRunStore;
    flakyStore.commit = (...args) => {
      if (failures-- > 0) return Promise.reject(new Error('store unreachable'));
      return p.runs.commit(...args);
    };
    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: twoStepWorkers(calls) });
    await manager.start();
    const o = new Orchestrator({
      ...p,
      runs: flakyStore,
      timerPollIntervalMs: 0,
      resultRetryBaseDelayMs: 5,
    });
    await o.start();
    try {
      await o.registerWorkflow(twoSteps);
      const { txId } = await o.startWorkflow('two_steps', {});
      const run = await o.waitForTerminal(txId, { timeoutMs: 15_000 });
      expect(run.state).toBe('completed');
      expect(await p.bus.listDeadLetters(Topics.results)).toEqual([]);
    } finally {
      await manager.close();
      await o.close();
    }
  }, 20_000);
});

describe('the embedded mode under more starts than it keeps in progress', () => {
  it('holds starts at maxActiveRuns and still finishes every run; parked runs hold no start back', async () => {
    const maxActiveRuns = 4;
    let peak = 0;
    let held = 0;
    const stack = await startEmbedded({
      workers: [
        defineWorker('w.step', async () => {
          peak = Math.max(peak, stack.runs.activeRuns);
          held = Math.max(held, stack.runs.waitingStarts);
          return { done: true };
        }),
      ],
      definitions: [
        new WorkflowBuilder('busy').step('one', 'w.step').step('two', 'w.step').build(),
        new WorkflowBuilder('parked').wait('approve', 'approved').build(),
      ],
      runs: { maxActiveRuns },
    });
    try {
      // Parked runs first: more of them than the bound, and none holds the busy starts back.
      const parked = await Promise.all(
        Array.from({ length: 6 }, () => stack.orchestrator.startWorkflow('parked', {})),
      );
      const starts = Array.from({ length: 40 }, () => stack.orchestrator.startWorkflow('busy', {}));
      const started = await Promise.all(starts);
      const finished = await Promise.all(
        started.map(({ txId }) => stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 })),
      );
      expect(finished.map((run) => run.state)).toEqual(started.map(() => 'completed'));
      // Starts were held: the workers saw them waiting.
      expect(held).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(maxActiveRuns);
      for (const { txId } of parked) await stack.orchestrator.signal(txId, 'approved');
      for (const { txId } of parked) {
        expect((await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 })).state).toBe(
          'completed',
        );
      }
    } finally {
      await stack.close();
    }
  });
});

describe("the embedded mode's default bound on runs in progress", () => {
  it("is twice the hosted workers' slots, and never below 64", () => {
    const worker = (name: string, concurrency?: number) =>
      defineWorker(name, async () => ({}), concurrency === undefined ? {} : { concurrency });
    // Five workers of the default 16 slots (the order saga's).
    expect(defaultMaxActiveRuns(['a', 'b', 'c', 'd', 'e'].map((name) => worker(name)))).toBe(160);
    expect(defaultMaxActiveRuns([worker('a', 40), worker('b', 100)])).toBe(280);
    expect(defaultMaxActiveRuns([worker('a', 1)])).toBe(64);
    expect(defaultMaxActiveRuns([])).toBe(64);
  });

  it('holds the starts past it while every slot is busy, then finishes every run', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const stack = await startEmbedded({
      // 40 slots: 80 runs in progress (40 in the worker, 40 waiting for a slot), the rest held.
      workers: [defineWorker('w.slow', async () => gate.then(() => ({ done: true })), { concurrency: 40 })],
      definitions: [new WorkflowBuilder('slow').step('one', 'w.slow').build()],
    });
    try {
      const starts = Array.from({ length: 100 }, () => stack.orchestrator.startWorkflow('slow', {}));
      await waitFor(() => stack.runs.activeRuns === 80 && stack.runs.waitingStarts === 20);
      open();
      const started = await Promise.all(starts);
      const finished = await Promise.all(
        started.map(({ txId }) => stack.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 })),
      );
      expect(finished.map((run) => run.state)).toEqual(started.map(() => 'completed'));
      expect(stack.runs.activeRuns).toBe(0);
    } finally {
      open();
      await stack.close();
    }
  });
});

describe('the embedded mode and the event loop of its process', () => {
  it('lets timers run while runs of workers that wait on no I/O go on', async () => {
    /** Holds the thread for `ms`: a step that computes. */
    const busy = (ms: number): void => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    const compute = (name: string) =>
      defineWorker(name, () => {
        busy(0.2);
        return {};
      });
    const stack = await startEmbedded({
      workers: [compute('w.a'), compute('w.b'), compute('w.c')],
      definitions: [
        new WorkflowBuilder('compute').step('a', 'w.a').step('b', 'w.b').step('c', 'w.c').build(),
      ],
    });
    const total = 320;
    const finished = new Set<string>();
    let finishedWhenTimerRan: number | undefined;
    try {
      const unsubscribe = stack.orchestrator.onRunChanged((run) => {
        if (run.state === 'completed') finished.add(run.txId);
      });
      // Eight at a time, each start after the previous run of its lane ended: every command is
      // handed over without the bus, so nothing in the batch waits on I/O.
      const lane = async (): Promise<void> => {
        for (let started = 0; started < total / 8; started++) {
          const { txId } = await stack.orchestrator.startWorkflow('compute', {});
          await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 30_000 });
        }
      };
      setTimeout(() => (finishedWhenTimerRan = finished.size), 0);
      await Promise.all(Array.from({ length: 8 }, lane));
      unsubscribe();
      // 320 runs of three 0.2 ms steps hold the thread for at least 190 ms; the timer ran within
      // the first LOCAL_DISPATCH_SLICE_MS of them, not after the last.
      expect(finished.size).toBe(total);
      expect(finishedWhenTimerRan).toBeDefined();
      expect(finishedWhenTimerRan).toBeLessThan(total);
      expect(stack.orchestrator.stats.localDispatched).toBe(3 * total);
    } finally {
      await stack.close();
    }
  });
});
