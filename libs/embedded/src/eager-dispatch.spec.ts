/**
 * Eager dispatch: an orchestrator whose process hosts the workers hands them their commands and
 * takes their results back without the bus, in the workers' own slots, and loses nothing when a
 * local attempt or its result cannot finish the way it started.
 */
import { EventType, Topics, type Envelope, type StepCommandPayload } from '@multiagents/contracts';
import { createMemoryBackend, type MemoryRunStore } from '@multiagents/memory';
import { Orchestrator, type EventBus, type OrchestratorOptions } from '@multiagents/core';
import { ManualClock, waitFor } from '@multiagents/testing';
import { defineWorker, WorkerManager } from '@multiagents/worker-sdk';
import { startEmbedded } from './embedded-stack';
import { twoSteps, twoStepWorkers } from './test-two-steps';

/**
 * A memory backend whose bus counts what is published on it by topic (the services' publishes:
 * the store appends a transition's commands to the bus itself).
 */
function countingParts(clock = new ManualClock()) {
  const backend = createMemoryBackend({ clock });
  const published = new Map<string, number>();
  const bus = Object.create(backend.bus) as EventBus;
  bus.publish = (topic, envelopes) => {
    published.set(topic, (published.get(topic) ?? 0) + envelopes.length);
    return backend.bus.publish(topic, envelopes);
  };
  const count = (prefix: string): number =>
    [...published].reduce((sum, [topic, n]) => (topic.startsWith(prefix) ? sum + n : sum), 0);
  return { clock, bus, runs: backend.runs, definitions: backend.definitions, count };
}

/** The command of run `tx-<n>`'s first step, as the orchestrator hands it over. */
function firstStepCommand(n: number): Envelope<StepCommandPayload> {
  return {
    id: `tx-${n}:first:1`,
    type: EventType.StepCommand,
    txId: `tx-${n}`,
    workflowId: 'two_steps',
    step: 'first',
    attempt: 1,
    time: 0,
    headers: {},
    payload: {
      commandId: `tx-${n}:first:1`,
      worker: 'w.first',
      input: {},
      idempotencyKey: `tx-${n}:first`,
      compensation: false,
    },
  };
}

async function withEngine(
  parts: ReturnType<typeof countingParts>,
  manager: WorkerManager,
  options: Partial<OrchestratorOptions>,
  body: (o: Orchestrator) => Promise<void>,
): Promise<void> {
  const o = new Orchestrator({ ...parts, timerPollIntervalMs: 0, localWorkers: manager, ...options });
  await manager.start();
  await o.start();
  try {
    await o.registerWorkflow(twoSteps);
    await body(o);
  } finally {
    await manager.close();
    await o.close();
  }
}

describe('eager dispatch', () => {
  it('eagerDispatch: false sends every command through the bus', async () => {
    const calls: string[] = [];
    const stack = await startEmbedded({
      workers: twoStepWorkers(calls),
      definitions: [twoSteps],
      eagerDispatch: false,
    });
    try {
      const { txId } = await stack.orchestrator.startWorkflow('two_steps', {});
      expect((await stack.orchestrator.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
      expect(stack.orchestrator.stats.localDispatched).toBe(0);
      expect(stack.workerManager.counters).toMatchObject({ delivered: 2, local: 0 });
    } finally {
      await stack.close();
    }
  });

  it("local and bus attempts share the worker's slots: concurrency 1 is never passed, and the rest go on the bus", async () => {
    const parts = countingParts();
    let running = 0;
    let peak = 0;
    // Every attempt waits until all the runs have started: the one slot is taken meanwhile.
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const slow = defineWorker(
      'w.first',
      async () => {
        running++;
        peak = Math.max(peak, running);
        await gate;
        running--;
        return { first: true };
      },
      { concurrency: 1 },
    );
    const manager = new WorkerManager({ bus: parts.bus, workers: [slow, ...twoStepWorkers([]).slice(1)] });
    await withEngine(parts, manager, {}, async (o) => {
      const started = await Promise.all(Array.from({ length: 6 }, () => o.startWorkflow('two_steps', {})));
      open();
      for (const { txId } of started) {
        expect((await o.waitForTerminal(txId, { timeoutMs: 10_000 })).state).toBe('completed');
      }
      expect(peak).toBe(1);
    });
    // One slot: while it was taken, the other starts' commands crossed the bus.
    const { delivered, local } = manager.counters;
    expect(delivered).toBe(12);
    expect(local).toBeGreaterThan(0);
    expect(delivered - local).toBeGreaterThan(0);
    // Their results did not: the orchestrator of the process applied every one.
    expect(parts.count(Topics.results)).toBe(0);
  });

  it('a transition that is not committed gives its slot back and runs nothing', async () => {
    const parts = countingParts();
    const calls: string[] = [];
    const runs = Object.create(parts.runs) as MemoryRunStore;
    let refusals = 1;
    let failures = 1;
    runs.create = (transition) =>
      failures-- > 0 ? Promise.reject(new Error('store unreachable')) : parts.runs.create(transition);
    // The first commit (the result of `first`) loses a race: decided again on a fresh read.
    runs.commit = (expected, transition) =>
      refusals-- > 0 ? Promise.resolve(undefined) : parts.runs.commit(expected, transition);
    const manager = new WorkerManager({
      bus: parts.bus,
      workers: [defineWorker('w.first', () => ({}), { concurrency: 1 }), ...twoStepWorkers(calls).slice(1)],
    });
    await withEngine(parts, manager, { runs }, async (o) => {
      await expect(o.startWorkflow('two_steps', {})).rejects.toThrow('store unreachable');
      // The failed create held the only slot of w.first for a moment, and gave it back.
      const slot = manager.reserve('w.first');
      expect(slot).toBeDefined();
      slot?.release();
      const { txId } = await o.startWorkflow('two_steps', {});
      expect((await o.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
      expect(o.stats.casConflicts).toBe(1);
      expect(calls).toEqual([`${txId}:second`]);
      expect(manager.counters).toMatchObject({ delivered: 2, local: 2 });
    });
  });

  it('a result the orchestrator cannot apply is published on the bus and applied from there', async () => {
    const parts = countingParts();
    const calls: string[] = [];
    const runs = Object.create(parts.runs) as MemoryRunStore;
    let failures = 1;
    runs.commit = (expected, transition) =>
      failures-- > 0
        ? Promise.reject(new Error('store unreachable'))
        : parts.runs.commit(expected, transition);
    const manager = new WorkerManager({ bus: parts.bus, workers: twoStepWorkers(calls) });
    await withEngine(parts, manager, { runs, resultRetryBaseDelayMs: 5 }, async (o) => {
      const { txId } = await o.startWorkflow('two_steps', {});
      expect((await o.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
      expect(calls).toEqual([`${txId}:first`, `${txId}:second`]);
      expect(parts.count(Topics.results)).toBe(1);
      expect(manager.counters).toMatchObject({ delivered: 2, local: 2 });
    });
  });

  it('a command handed over after its manager closed goes on the bus instead', async () => {
    const parts = countingParts();
    // A drain waits for held slots up to its timeout: this commit outlasts it.
    const manager = new WorkerManager({ bus: parts.bus, workers: twoStepWorkers([]), drainTimeoutMs: 0 });
    const delivered: unknown[] = [];
    manager.deliverResultsTo(async (result) => {
      delivered.push(result);
    });
    await manager.start();
    const slot = manager.reserve('w.first');
    expect(slot).toBeDefined();
    await manager.close();
    expect(manager.reserve('w.first')).toBeUndefined();
    slot?.run(firstStepCommand(1));
    await waitFor(() => parts.count(Topics.command('w.first')) === 1, {
      timeoutMs: 4_000,
      description: 'the command on the bus',
    });
    expect(delivered).toEqual([]);
    expect(manager.counters.delivered).toBe(0);
  });

  it('counts a command waiting for the next turn as running, so no deadline sends it again', async () => {
    const parts = countingParts();
    const manager = new WorkerManager({ bus: parts.bus, workers: twoStepWorkers([]) });
    await manager.start();
    try {
      // One task that holds the loop past the slice (10 ms): the second command waits for the next turn.
      manager.reserve('w.first')?.run(firstStepCommand(1));
      const until = performance.now() + 15;
      while (performance.now() < until);
      manager.reserve('w.first')?.run(firstStepCommand(2));
      expect(manager.counters.delivered).toBe(1);
      expect(manager.running('tx-2:first:1')).toBe(true);
      await waitFor(() => manager.counters.delivered === 2);
    } finally {
      await manager.close();
    }
  });

  it('a close waits for a command handed over to the bus while it drains', async () => {
    const parts = countingParts();
    let release: () => void = () => undefined;
    const publishing = new Promise<void>((resolve) => (release = resolve));
    const publish = parts.bus.publish;
    let handedOver = 0;
    parts.bus.publish = async (topic, envelopes) => {
      if (topic === Topics.command('w.first')) {
        handedOver += 1;
        await publishing;
      }
      return publish(topic, envelopes);
    };
    const manager = new WorkerManager({ bus: parts.bus, workers: twoStepWorkers([]) });
    await manager.start();
    const slot = manager.reserve('w.first');
    let closed = false;
    const closing = manager.close().then(() => (closed = true));
    // The orchestrator's commit ends while the manager drains: the command goes to the bus.
    slot?.run(firstStepCommand(1));
    await waitFor(() => handedOver === 1, { timeoutMs: 4_000, description: 'the hand-over' });
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    release();
    await closing;
    expect(parts.count(Topics.command('w.first'))).toBe(1);
  });

  it('a command a drain sends on the bus is not counted as dispatched here', async () => {
    const parts = countingParts();
    const runs = Object.create(parts.runs) as MemoryRunStore;
    let committing = false;
    let commit: () => void = () => undefined;
    const committed = new Promise<void>((resolve) => (commit = resolve));
    // The start's write waits, its command's slot held, until the manager is draining.
    runs.create = async (transition) => {
      committing = true;
      await committed;
      return parts.runs.create(transition);
    };
    const manager = new WorkerManager({ bus: parts.bus, workers: twoStepWorkers([]) });
    const o = new Orchestrator({ ...parts, runs, timerPollIntervalMs: 0, localWorkers: manager });
    await manager.start();
    await o.start();
    try {
      await o.registerWorkflow(twoSteps);
      const starting = o.startWorkflow('two_steps', {});
      await waitFor(() => committing, { timeoutMs: 4_000, description: 'the start being written' });
      const closing = manager.close();
      commit();
      await starting;
      await closing;
      expect(parts.count(Topics.command('w.first'))).toBe(1);
      expect(manager.counters.local).toBe(0);
      expect(o.stats.localDispatched).toBe(0);
    } finally {
      await o.close();
    }
  });

  it('a local attempt that dies with its manager is sent again on the bus, same command id, once overdue', async () => {
    const parts = countingParts();
    // The local manager's worker never finishes on its own: it ends only when aborted.
    const hanging = defineWorker('w.first', (_input, ctx) => {
      return new Promise((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    });
    const local = new WorkerManager({ bus: parts.bus, workers: [hanging], drainTimeoutMs: 0 });
    const calls: string[] = [];
    const other = new WorkerManager({ bus: parts.bus, workers: twoStepWorkers(calls) });
    await other.start();
    try {
      await withEngine(parts, local, { redispatchAfterMs: 10_000, recoverySweepIntervalMs: 0 }, async (o) => {
        const { txId } = await o.startWorkflow('two_steps', {});
        const commandId = `${txId}:first:1`;
        await waitFor(() => local.running(commandId), { timeoutMs: 4_000, description: 'the local attempt' });
        // Running here, only slow: not sent again while it runs.
        parts.clock.advance(10_000);
        expect(await o.redispatchOverdue()).toBe(0);
        expect(parts.count(Topics.command('w.first'))).toBe(0);
        // Its manager goes (the attempt is aborted, no result): the next deadline sends it on the bus.
        await local.close();
        expect(local.running(commandId)).toBe(false);
        parts.clock.advance(10_000);
        expect(await o.redispatchOverdue()).toBe(1);
        expect((await o.waitForTerminal(txId, { timeoutMs: 4_000 })).state).toBe('completed');
        expect(calls).toEqual([`${txId}:first`, `${txId}:second`]);
        expect(parts.count(Topics.command('w.first'))).toBe(1);
        expect(o.stats).toMatchObject({ redispatched: 1, localDispatched: 1 });
        // The other manager ran `first` from the bus, and `second`, which nothing here hosts.
        expect(other.counters).toMatchObject({ delivered: 2, local: 0 });
      });
    } finally {
      await other.close();
    }
  });
});
