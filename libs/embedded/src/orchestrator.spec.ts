/**
 * The orchestrator shell (libs/core) over the in-memory adapters: what a user of the embedded
 * mode relies on — crash recovery through the outbox, compare-and-set between two writers,
 * durable timers, idempotent starts, and clear errors for bad input.
 */
import {
  ErrorCode,
  EventType,
  NonRetryableError,
  Topics,
  type Envelope,
  type Run,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { MemoryEventBus } from '@multiagents/bus-memory';
import { Orchestrator, WorkflowBuilder, type EventBus } from '@multiagents/core';
import { MemoryDefinitionStore, MemoryStateStore, MemoryTimerStore } from '@multiagents/store-memory';
import { ManualClock, waitFor } from '@multiagents/testing';
import { defineWorker, WorkerManager } from '@multiagents/worker-sdk';
import { startEmbedded } from './embedded-stack';

const twoSteps: WorkflowDefinition = new WorkflowBuilder('two_steps')
  .step('first', 'w.first', { compensation: 'w.undo_first' })
  .step('second', 'w.second')
  .build();

const workers = (calls: string[], failSecond = false) => [
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

describe('Orchestrator over the memory adapters', () => {
  it('runs a saga to completion and compensates a failure', async () => {
    const calls: string[] = [];
    const stack = await startEmbedded({ workers: workers(calls, true), definitions: [twoSteps] });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('two_steps', {});
      const run = await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('compensated');
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`, `${txId}:first:undo`]);
    } finally {
      await stack.close();
    }
  });

  it('returns the same run for the same idempotency key and refuses it with another input', async () => {
    const stack = await startEmbedded({ workers: workers([]), definitions: [twoSteps] });
    try {
      const a = await stack.orchestrator.startWorkflow('two_steps', { n: 1 }, { idempotencyKey: 'k' });
      const b = await stack.orchestrator.startWorkflow('two_steps', { n: 1 }, { idempotencyKey: 'k' });
      expect(b).toEqual({ txId: a.txId, created: false });
      await expect(
        stack.orchestrator.startWorkflow('two_steps', { n: 2 }, { idempotencyKey: 'k' }),
      ).rejects.toMatchObject({
        code: ErrorCode.AlreadyExists,
      });
      expect((await stack.store.list({}, 10)).runs).toHaveLength(1);
    } finally {
      await stack.close();
    }
  });

  it('refuses bad input with clear errors and stores nothing', async () => {
    const stack = await startEmbedded({
      workers: workers([]),
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
      expect((await stack.store.list({}, 10)).runs).toHaveLength(0);

      const { txId } = await o.startWorkflow('two_steps', {});
      await o.waitForTerminal(txId, { timeoutMs: 4_000 });
      await expect(o.signal(txId, 'late')).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
      await expect(o.cancel(txId)).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
    } finally {
      await stack.close();
    }
  });

  it('dead-letters a forged result and keeps consuming the ones behind it', async () => {
    const calls: string[] = [];
    const stack = await startEmbedded({ workers: workers(calls), definitions: [twoSteps] });
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
    const stack = await startEmbedded({ workers: workers(calls), definitions: [twoSteps] });
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

describe('Orchestrator crash and concurrency semantics', () => {
  function parts(clock = new ManualClock()) {
    return {
      clock,
      bus: new MemoryEventBus(),
      store: new MemoryStateStore({ clock }),
      timers: new MemoryTimerStore(),
      definitions: new MemoryDefinitionStore(),
    };
  }

  it('republishes the outbox a crashed writer left behind', async () => {
    const p = parts();
    // A bus that is down: the run is saved with its outbox, the command is not published.
    const downBus: EventBus = {
      ...p.bus,
      publish: () => Promise.reject(new Error('bus down')),
    } as unknown as EventBus;
    const crashed = new Orchestrator({
      ...p,
      bus: downBus,
      timerPollIntervalMs: 0,
      outboxSweepIntervalMs: 0,
    });
    await crashed.registerWorkflow(twoSteps);
    const { txId } = await crashed.startWorkflow('two_steps', {});
    expect((await p.store.get(txId))?.outbox.length).toBeGreaterThan(0);

    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: workers(calls) });
    await manager.start();
    const recovered = new Orchestrator({ ...p, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
    await recovered.start(); // recovers the outbox before consuming
    try {
      const run = await recovered.waitForTerminal(txId, { timeoutMs: 4_000, pollIntervalMs: 20 });
      expect(run.state).toBe('completed');
      expect(recovered.stats.outboxRecovered).toBeGreaterThanOrEqual(1);
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`]);
      expect((await p.store.get(txId))?.outbox).toHaveLength(0);
    } finally {
      await manager.close();
      await recovered.close();
    }
  });

  it('refuses a stale writer: two orchestrators race on one run and exactly one applies each result', async () => {
    const p = parts();
    const a = new Orchestrator({ ...p, consumerName: 'a', timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
    await a.registerWorkflow(twoSteps);
    const { txId } = await a.startWorkflow('two_steps', {});
    const stored = await p.store.get(txId);
    // Writer B loaded version 1 and then paused; A applies a change meanwhile.
    const run = stored?.run as Run;
    expect(await p.store.compareAndSet(txId, 1, { ...run, updatedAt: run.updatedAt + 1 }, [])).toBe(2);
    // B wakes up and tries to write on version 1: refused, nothing changes.
    expect(await p.store.compareAndSet(txId, 1, { ...run, context: { stale: true } }, [])).toBeUndefined();
    expect((await p.store.get(txId))?.run.context).toEqual({});
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
    const o = new Orchestrator({ ...p, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
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
    const o = new Orchestrator({ ...p, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
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

  it('two orchestrators on one store: a stale cached copy is never trusted to ignore or overwrite', async () => {
    const p = parts();
    const flow = new WorkflowBuilder('handoff')
      .sleep('cool_off', 1_000)
      .wait('approve', 'approved', { timeoutMs: 500 })
      .build();
    const options = { ...p, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 };
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

  it('a later write carries out what an earlier failed publish left in the outbox', async () => {
    const p = parts();
    let down = true;
    const flakyBus = Object.create(p.bus) as MemoryEventBus;
    flakyBus.publish = (topic, envelopes) =>
      down ? Promise.reject(new Error('bus down')) : p.bus.publish(topic, envelopes);
    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: workers(calls) });
    await manager.start();
    const o = new Orchestrator({ ...p, bus: flakyBus, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
    await o.start();
    try {
      await o.registerWorkflow(twoSteps);
      const { txId } = await o.startWorkflow('two_steps', {}); // saved; its command was not published
      down = false;
      await o.signal(txId, 'unrelated'); // the next write of this run
      const run = await o.waitForTerminal(txId, { timeoutMs: 4_000 });
      expect(run.state).toBe('completed');
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`]);
    } finally {
      await manager.close();
      await o.close();
    }
  });

  it('waits out a store that fails for a while: results are redelivered, not dead-lettered', async () => {
    const p = parts();
    let failures = 7; // more deliveries than a bus's default maxDeliveries (5) allows
    const flakyStore = Object.create(p.store) as MemoryStateStore;
    flakyStore.compareAndSet = (...args) => {
      if (failures-- > 0) return Promise.reject(new Error('store unreachable'));
      return p.store.compareAndSet(...args);
    };
    const calls: string[] = [];
    const manager = new WorkerManager({ bus: p.bus, workers: workers(calls) });
    await manager.start();
    const o = new Orchestrator({
      ...p,
      store: flakyStore,
      timerPollIntervalMs: 0,
      outboxSweepIntervalMs: 0,
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
