import { EventType, RunState, Topics, type Run } from '@multiagents/contracts';
import type { Transition } from '@multiagents/core';
import { makeRun, runStoreConformance, ManualClock } from '@multiagents/testing';
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
