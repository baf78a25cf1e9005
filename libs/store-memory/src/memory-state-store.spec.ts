import fc from 'fast-check';
import { ErrorCode, RunState, type Run } from '@multiagents/contracts';
import type { Effect, OutboxEntry, RunFilter } from '@multiagents/core';
import { ManualClock, makeEnvelope, makeRun, stateStoreConformance } from '@multiagents/testing';
import { MemoryStateStore } from './memory-state-store';

stateStoreConformance('MemoryStateStore', async () => ({ store: new MemoryStateStore() }));

const effect = (): Effect => ({ type: 'publish', topic: 'events', envelope: makeEnvelope() });

describe('MemoryStateStore specifics', () => {
  it('stamps outbox entries with the injected clock, per version', async () => {
    const clock = new ManualClock(1_000);
    const store = new MemoryStateStore({ clock });
    const run = makeRun();
    await store.create(run, [effect()]);
    clock.advance(1_000);
    await store.compareAndSet(run.txId, 1, { ...run }, [effect()]);

    expect(await store.listPendingOutbox(1_000, 10)).toEqual([]);
    expect((await store.listPendingOutbox(1_001, 10)).map((p) => p.entries.length)).toEqual([2]);
    // Once version 1 is done, the run's oldest pending entry is the one written at 2 000.
    await store.clearOutbox(run.txId, 1);
    expect(await store.listPendingOutbox(2_000, 10)).toEqual([]);
    expect(await store.listPendingOutbox(2_001, 10)).toHaveLength(1);
  });

  it('lists pending outboxes oldest first', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryStateStore({ clock });
    const [a, b, c] = [makeRun(), makeRun(), makeRun()];
    await store.create(a, []);
    clock.set(30);
    await store.create(b, [effect()]);
    clock.set(10);
    await store.create(c, [effect()]);
    clock.set(20);
    await store.compareAndSet(a.txId, 1, { ...a }, [effect()]);

    expect((await store.listPendingOutbox(100, 10)).map((p) => p.txId)).toEqual([c.txId, a.txId, b.txId]);
    expect((await store.listPendingOutbox(100, 2)).map((p) => p.txId)).toEqual([c.txId, a.txId]);
  });

  it('hands out frozen snapshots that callers cannot change', async () => {
    const store = new MemoryStateStore();
    const run = makeRun();
    await store.create(run, [effect()]);
    const stored = await store.get(run.txId);
    expect(() => (stored?.outbox as OutboxEntry[]).push({ version: 9, effect: effect() })).toThrow(TypeError);
    expect(() => {
      (stored as { version: number }).version = 9;
    }).toThrow(TypeError);
    expect(() => {
      (stored?.outbox[0] as { version: number }).version = 9;
    }).toThrow(TypeError);
    expect((await store.get(run.txId))?.version).toBe(1);
  });

  it('reads only the runs of the requested state when listing by state', async () => {
    const store = new MemoryStateStore();
    for (let i = 0; i < 5_000; i += 1) await store.create(makeRun({ state: RunState.Completed }), []);
    const running = makeRun({ state: RunState.Running });
    await store.create(running, []);

    const gets = jest.spyOn(Map.prototype, 'get');
    try {
      const page = await store.list({ state: RunState.Running }, 10);
      expect(page.runs.map((r) => r.txId)).toEqual([running.txId]);
      expect(gets.mock.calls.length).toBeLessThan(20);
    } finally {
      gets.mockRestore();
    }
  });

  it('refuses a run whose txId differs from the one written, and invalid limits', async () => {
    const store = new MemoryStateStore();
    const run = makeRun();
    await store.create(run, []);
    await expect(store.compareAndSet(run.txId, 1, makeRun(), [])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(store.list({}, 0)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(store.listPendingOutbox(0, 1.5)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  });

  it('refuses calls after close', async () => {
    const store = new MemoryStateStore();
    await store.close();
    await expect(store.get('x')).rejects.toThrow('closed');
  });

  it('pages exactly like filtering and sorting everything, for random runs, filters and page sizes', async () => {
    const states = [RunState.Running, RunState.Completed, RunState.Failed] as const;
    const runArb = fc.record({
      createdAt: fc.integer({ min: 0, max: 8 }),
      state: fc.constantFrom(...states),
      workflowId: fc.constantFrom('w1', 'w2'),
      moveTo: fc.option(fc.constantFrom(...states), { nil: undefined }),
    });
    const filterArb = fc.record(
      {
        state: fc.constantFrom(...states),
        workflowId: fc.constantFrom('w1', 'w2'),
        createdAfter: fc.integer({ min: 0, max: 8 }),
        createdBefore: fc.integer({ min: 0, max: 8 }),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(runArb, { maxLength: 30 }),
        filterArb,
        fc.integer({ min: 1, max: 7 }),
        async (specs, filter: RunFilter, pageSize) => {
          const store = new MemoryStateStore();
          const runs: Run[] = [];
          for (const [i, spec] of specs.entries()) {
            const run = makeRun({
              txId: `tx-${String(i).padStart(3, '0')}`,
              createdAt: spec.createdAt,
              state: spec.state,
              workflowId: spec.workflowId,
            });
            await store.create(run, []);
            if (spec.moveTo === undefined) {
              runs.push(run);
            } else {
              const moved = { ...run, state: spec.moveTo };
              await store.compareAndSet(run.txId, 1, moved, []);
              runs.push(moved);
            }
          }
          const expected = runs
            .filter(
              (r) =>
                (filter.state === undefined || r.state === filter.state) &&
                (filter.workflowId === undefined || r.workflowId === filter.workflowId) &&
                (filter.createdAfter === undefined || r.createdAt >= filter.createdAfter) &&
                (filter.createdBefore === undefined || r.createdAt <= filter.createdBefore),
            )
            .sort((a, b) => b.createdAt - a.createdAt || (a.txId < b.txId ? 1 : -1))
            .map((r) => r.txId);

          const seen: string[] = [];
          let cursor: string | undefined;
          let pages = 0;
          do {
            const page = await store.list(filter, pageSize, cursor);
            expect(page.runs.length).toBeLessThanOrEqual(pageSize);
            // A cursor always leads to at least one more run: no empty trailing page.
            if (cursor !== undefined) expect(page.runs.length).toBeGreaterThan(0);
            seen.push(...page.runs.map((r) => r.txId));
            cursor = page.nextCursor;
            pages += 1;
          } while (cursor !== undefined && pages < 100);
          expect(seen).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});
