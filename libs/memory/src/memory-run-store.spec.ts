import { EventType, RunState, Topics, type Run } from '@multiagents/contracts';
import type { Transition } from '@multiagents/core';
import { makeRun, runStoreConformance, ManualClock, waitFor } from '@multiagents/testing';
import { createMemoryBackend } from './memory-backend';
import { MemoryEventBus } from './memory-event-bus';
import { MemoryRunStore } from './memory-run-store';

runStoreConformance('memory', async () => {
  const backend = createMemoryBackend();
  return { runs: backend.runs, bus: backend.bus, atomicAck: true };
});

function write(run: Run): Transition {
  return { run, changedSteps: [], commands: [], schedule: [], cancel: [] };
}

describe('MemoryRunStore retention', () => {
  it('keeps at most retainFinishedRuns finished runs, dropping the ones that finished first', async () => {
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), retainFinishedRuns: 2 });
    const made = [1, 2, 3, 4].map(() => makeRun({ state: RunState.Running }));
    const live = makeRun({ state: RunState.Running });
    for (const run of [...made, live]) await runs.create(write(run));
    for (const run of made) {
      const stored = await runs.get(run.txId);
      await runs.commit(stored!, write({ ...run, state: RunState.Completed }));
    }
    expect(await runs.get(made[0]!.txId)).toBeUndefined();
    expect(await runs.get(made[1]!.txId)).toBeUndefined();
    expect((await runs.get(made[3]!.txId))?.run.state).toBe(RunState.Completed);
    expect((await runs.get(live.txId))?.run.state).toBe(RunState.Running);
    expect(runs.size).toBe(3);
    expect((await runs.list({}, 10)).runs.map((r) => r.txId).sort()).toEqual(
      [made[2]!.txId, made[3]!.txId, live.txId].sort(),
    );
    expect((await runs.list({ state: RunState.Completed }, 10)).runs).toHaveLength(2);
  });

  it('drops finished runs older than retainFinishedMs at the next write', async () => {
    const clock = new ManualClock();
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), clock, retainFinishedMs: 1_000 });
    const old = makeRun();
    const recent = makeRun();
    await runs.create(write(old));
    await runs.create(write(recent));
    await runs.commit((await runs.get(old.txId))!, write({ ...old, state: RunState.Failed }));
    clock.advance(1_001);
    await runs.commit((await runs.get(recent.txId))!, write({ ...recent, state: RunState.Completed }));
    expect(await runs.get(old.txId)).toBeUndefined();
    expect(await runs.get(recent.txId)).toBeDefined();
  });

  it('keeps a finished run that cannot be packed as it is, and forgets without packing with no retention', async () => {
    const runs = new MemoryRunStore({ bus: new MemoryEventBus() });
    const run = makeRun({ state: RunState.Running });
    await runs.create(write(run));
    const odd: Run = { ...run, state: RunState.Completed, context: { big: 1n } };
    await expect(runs.commit((await runs.get(run.txId))!, write(odd))).resolves.toEqual({
      version: 2,
      revision: '2',
    });
    expect((await runs.get(run.txId))?.run).toBe(odd);

    const none = new MemoryRunStore({ bus: new MemoryEventBus(), retainFinishedRuns: 0 });
    const gone = makeRun({ state: RunState.Running });
    await none.create(write(gone));
    await none.commit(
      (await none.get(gone.txId))!,
      write({ ...odd, txId: gone.txId, createdAt: gone.createdAt }),
    );
    expect(await none.get(gone.txId)).toBeUndefined();
  });

  it('keeps a reopened run live, out of the finished list', async () => {
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), retainFinishedRuns: 1 });
    const a = makeRun();
    const b = makeRun();
    await runs.create(write(a));
    await runs.create(write(b));
    const failed = await runs.commit((await runs.get(a.txId))!, write({ ...a, state: RunState.Failed }));
    // An operator action reopens it before anything else finishes.
    await runs.commit(failed!, write({ ...a, state: RunState.Running }));
    await runs.commit((await runs.get(b.txId))!, write({ ...b, state: RunState.Completed }));
    expect((await runs.get(a.txId))?.run.state).toBe(RunState.Running);
  });
  it('counts a reopened run that finished again from its second finish, not its first', async () => {
    const clock = new ManualClock();
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), clock, retainFinishedRuns: 2 });
    const [a, b, c, d] = [makeRun(), makeRun(), makeRun(), makeRun()];
    for (const run of [a, b, c, d]) await runs.create(write(run));
    // One millisecond for everything: the order of the finishes decides, not their times.
    const finish = async (run: Run): Promise<void> => {
      await runs.commit((await runs.get(run.txId))!, write({ ...run, state: RunState.Completed }));
    };
    await finish(c);
    await finish(a);
    await runs.commit((await runs.get(a.txId))!, write({ ...a, state: RunState.Running })); // reopened
    await finish(b);
    await finish(a); // c goes
    await finish(d); // b goes: it finished before a's second finish
    expect(await runs.get(c.txId)).toBeUndefined();
    expect(await runs.get(b.txId)).toBeUndefined();
    expect((await runs.get(a.txId))?.run.state).toBe(RunState.Completed);
    expect((await runs.get(d.txId))?.run.state).toBe(RunState.Completed);
  });

  it('hands a finished run back whole (kept packed), by get and by list, and reopens it on its revision', async () => {
    const runs = new MemoryRunStore({ bus: new MemoryEventBus() });
    const run = makeRun({
      state: RunState.Running,
      context: { orderId: 'o-1', items: [{ sku: 'a', qty: 2 }] },
    });
    await runs.create(write(run));
    const done: Run = { ...run, state: RunState.Completed, context: { ...run.context, tracking: 't-1' } };
    const revision = await runs.commit((await runs.get(run.txId))!, write(done));
    const stored = await runs.get(run.txId);
    expect(stored).toEqual({ run: done, version: 2, revision: revision!.revision });
    // Unpacked from its bytes: equal, not the object committed.
    expect(stored!.run).not.toBe(done);
    expect((await runs.list({ workflowId: run.workflowId }, 10)).runs).toEqual([done]);
    expect((await runs.list({ state: RunState.Completed }, 10)).runs).toEqual([done]);
    // A stale revision is refused; the current one reopens it (an operator's retry).
    expect(
      await runs.commit({ version: 1, revision: '1' }, write({ ...done, state: RunState.Running })),
    ).toBeUndefined();
    const reopened: Run = { ...done, state: RunState.Running };
    expect(await runs.commit(stored!, write(reopened))).toEqual({ version: 3, revision: '3' });
    expect((await runs.get(run.txId))?.run).toBe(reopened);
  });
});

describe('MemoryRunStore atomicity', () => {
  it('writes nothing when a message of the transition cannot be encoded', async () => {
    const backend = createMemoryBackend({ bus: { codec: { signingKey: 'k', maxBytes: 600 } } });
    const run = makeRun();
    const first = await backend.runs.create(write(run));
    const huge = {
      id: `${run.txId}:v2`,
      type: EventType.WorkflowTransitioned,
      txId: run.txId,
      workflowId: run.workflowId,
      time: 1,
      headers: {},
      payload: { blob: 'x'.repeat(1_000) },
    };
    await expect(
      backend.runs.commit(first.stored, {
        ...write({ ...run, state: RunState.Completed }),
        event: huge as never,
      }),
    ).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    expect((await backend.runs.get(run.txId))?.version).toBe(1);
    expect(backend.bus.retainedCount(Topics.events)).toBe(0);
  });
});

describe('MemoryRunStore admission', () => {
  /** Settles pending promise reactions, so a start let in has resolved by the next line. */
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  async function commit(runs: MemoryRunStore, run: Run, state: RunState): Promise<void> {
    await runs.commit((await runs.get(run.txId))!, write({ ...run, state }));
  }

  /** A start as the orchestrator makes one: let in, create, release. */
  async function start(runs: MemoryRunStore, run: Run): Promise<void> {
    const release = await runs.admit();
    try {
      await runs.create(write(run));
    } finally {
      release();
    }
  }

  it('holds starts while maxActiveRuns runs are in progress, and lets them in oldest first as runs finish', async () => {
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns: 2 });
    const [a, b] = [makeRun({ state: RunState.Running }), makeRun({ state: RunState.Running })];
    await start(runs, a);
    await start(runs, b);
    expect(runs.activeRuns).toBe(2);

    const order: string[] = [];
    const first = runs.admit().then((release) => (order.push('first'), release));
    const second = runs.admit().then((release) => (order.push('second'), release));
    await settle();
    expect(order).toEqual([]);
    expect(runs.waitingStarts).toBe(2);

    // A step of a run in progress frees nothing.
    await commit(runs, a, RunState.Running);
    await settle();
    expect(order).toEqual([]);

    await commit(runs, a, RunState.Completed);
    await settle();
    expect(order).toEqual(['first']);
    expect(runs.waitingStarts).toBe(1);

    // A run parked on a wait or sleep does not count: the next start need not wait for a signal.
    await commit(runs, b, RunState.Waiting);
    await settle();
    expect(order).toEqual(['first', 'second']);
    (await first)();
    (await second)();
    expect(runs.activeRuns).toBe(0);
  });

  it('counts a start from the moment it is let in: a burst of starts never passes the bound', async () => {
    const maxActiveRuns = 3;
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns });
    const made = Array.from({ length: 12 }, () => makeRun({ state: RunState.Running }));
    let peak = 0;
    const starting = made.map((run) =>
      start(runs, run).then(() => {
        peak = Math.max(peak, runs.activeRuns);
      }),
    );
    await settle();
    expect(runs.activeRuns).toBe(maxActiveRuns);
    expect(runs.waitingStarts).toBe(made.length - maxActiveRuns);
    // Finish runs one by one, as workers would: each lets exactly one start in.
    for (const run of made) {
      await waitFor(async () => (await runs.get(run.txId)) !== undefined, { description: 'run let in' });
      await commit(runs, run, RunState.Completed);
    }
    await Promise.all(starting);
    expect(peak).toBe(maxActiveRuns);
  });

  it('frees the place of a start that created nothing', async () => {
    const runs = new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns: 1 });
    const release = await runs.admit();
    const next = runs.admit();
    await settle();
    expect(runs.waitingStarts).toBe(1);
    release(); // the start failed before its run was created
    release(); // a second release changes nothing
    (await next)();
    expect(runs.activeRuns).toBe(0);
    expect(runs.waitingStarts).toBe(0);
  });

  it('rejects the starts still waiting when it closes, and never holds one with no bound', async () => {
    const bounded = new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns: 1 });
    await start(bounded, makeRun({ state: RunState.Running }));
    const held = bounded.admit();
    await bounded.close();
    await expect(held).rejects.toThrow(/MemoryRunStore is closed/);

    const unbounded = new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns: Infinity });
    for (let i = 0; i < 50; i += 1) await start(unbounded, makeRun({ state: RunState.Running }));
    expect(unbounded.activeRuns).toBe(50);
  });

  it('refuses a bound that is not a positive integer', () => {
    for (const maxActiveRuns of [0, -1, 1.5, Number.NaN]) {
      expect(() => new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns })).toThrow(
        /maxActiveRuns must be an integer >= 1 or Infinity/,
      );
    }
  });
});
