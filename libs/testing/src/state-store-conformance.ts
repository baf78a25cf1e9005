/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import { ErrorCode, RunState, type Run } from '@multiagents/contracts';
import type { Effect, StateStore } from '@multiagents/core';
import { makeEnvelope } from './make-envelope';
import { makeRun } from './make-run';

/** What an adapter's factory hands to {@link stateStoreConformance}: a fresh, empty store per test. */
export interface StateStoreFixture {
  readonly store: StateStore;
  /** Runs after `store.close()`. */
  readonly cleanup?: () => Promise<void>;
}

function publishEffect(n: number): Effect {
  return { type: 'publish', topic: 'commands.charge', envelope: makeEnvelope({ payload: { n } }) };
}

function scheduleEffect(id: string): Effect {
  return {
    type: 'schedule',
    timer: {
      id,
      txId: 'tx',
      dueAt: 1_700_000_100_000,
      payload: { kind: 'retry', step: 'charge', attempt: 2 },
    },
  };
}

/** A new version of `run` (a fresh object: callers never mutate a run they handed to the store). */
function next(run: Run, changes: Partial<Run>): Run {
  return { ...run, updatedAt: run.updatedAt + 1, ...changes };
}

/**
 * The StateStore contract (SPEC §4: compare-and-set on a version, outbox written atomically with
 * the state, idempotent create, paged listing) as Jest tests, run by every adapter.
 *
 * @example
 * stateStoreConformance('memory', async () => ({ store: new MemoryStateStore() }));
 */
export function stateStoreConformance(name: string, factory: () => Promise<StateStoreFixture>): void {
  describe(`StateStore conformance: ${name}`, () => {
    let fixture: StateStoreFixture;
    let store: StateStore;

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async () => {
      await store.close();
      await fixture.cleanup?.();
    });

    describe('create and get', () => {
      it('stores a new run at version 1 with its outbox in order', async () => {
        const run = makeRun();
        const effects = [publishEffect(1), scheduleEffect('t1')];
        expect(await store.create(run, effects)).toEqual({ created: true, txId: run.txId });

        const stored = await store.get(run.txId);
        expect(stored?.version).toBe(1);
        expect(stored?.run).toEqual(run);
        expect(stored?.outbox).toEqual(effects.map((effect) => ({ version: 1, effect })));
      });

      it('returns undefined for an unknown run', async () => {
        expect(await store.get('no-such-run')).toBeUndefined();
      });

      it('refuses a second run with the same txId', async () => {
        const run = makeRun();
        await store.create(run, []);
        await expect(store.create(next(run, {}), [publishEffect(1)])).rejects.toMatchObject({
          code: ErrorCode.AlreadyExists,
        });
        expect((await store.get(run.txId))?.outbox).toEqual([]);
      });

      it('returns the first txId for a reused idempotency key and stores nothing', async () => {
        const first = makeRun();
        const second = makeRun();
        expect(await store.create(first, [], 'order-42')).toEqual({ created: true, txId: first.txId });
        expect(await store.create(second, [publishEffect(1)], 'order-42')).toEqual({
          created: false,
          txId: first.txId,
        });
        expect(await store.get(second.txId)).toBeUndefined();
        expect((await store.list({}, 10)).runs.map((r) => r.txId)).toEqual([first.txId]);
      });

      it('treats concurrent creates with one idempotency key as one run', async () => {
        const runs = [makeRun(), makeRun(), makeRun()];
        const results = await Promise.all(runs.map((run) => store.create(run, [], 'same-key')));
        const created = results.filter((r) => r.created);
        expect(created).toHaveLength(1);
        expect(new Set(results.map((r) => r.txId))).toEqual(new Set([created[0]?.txId]));
        expect((await store.list({}, 10)).runs).toHaveLength(1);
      });
    });

    describe('compareAndSet', () => {
      it('replaces the run, increments the version and appends the outbox with the new version', async () => {
        const run = makeRun();
        const [e1, e2] = [publishEffect(1), publishEffect(2)];
        await store.create(run, [e1]);
        const v2 = next(run, { state: RunState.Waiting, context: { paid: true } });

        expect(await store.compareAndSet(run.txId, 1, v2, [e2])).toBe(2);
        const stored = await store.get(run.txId);
        expect(stored?.version).toBe(2);
        expect(stored?.run).toEqual(v2);
        expect(stored?.outbox).toEqual([
          { version: 1, effect: e1 },
          { version: 2, effect: e2 },
        ]);

        expect(await store.compareAndSet(run.txId, 2, next(v2, {}), [])).toBe(3);
        expect((await store.get(run.txId))?.version).toBe(3);
      });

      it('refuses a stale version and changes nothing', async () => {
        const run = makeRun();
        await store.create(run, []);
        const v2 = next(run, { context: { winner: true } });
        await store.compareAndSet(run.txId, 1, v2, [publishEffect(1)]);
        const before = await store.get(run.txId);

        expect(
          await store.compareAndSet(run.txId, 1, next(run, { context: { stale: true } }), [publishEffect(9)]),
        ).toBeUndefined();
        expect(
          await store.compareAndSet(run.txId, 7, next(run, { context: { future: true } }), []),
        ).toBeUndefined();
        expect(await store.get(run.txId)).toEqual(before);
      });

      it('lets exactly one of two concurrent writers of the same version win', async () => {
        const run = makeRun();
        await store.create(run, []);
        const a = next(run, { context: { writer: 'a' } });
        const b = next(run, { context: { writer: 'b' } });
        const results = await Promise.all([
          store.compareAndSet(run.txId, 1, a, [publishEffect(1)]),
          store.compareAndSet(run.txId, 1, b, [publishEffect(2)]),
        ]);

        expect(results.filter((r) => r === 2)).toHaveLength(1);
        expect(results.filter((r) => r === undefined)).toHaveLength(1);
        const stored = await store.get(run.txId);
        expect(stored?.run).toEqual(results[0] === 2 ? a : b);
        expect(stored?.outbox).toHaveLength(1);
      });

      it('rejects a write to an unknown run with NOT_FOUND', async () => {
        const run = makeRun();
        await expect(store.compareAndSet(run.txId, 1, run, [])).rejects.toMatchObject({
          code: ErrorCode.NotFound,
        });
      });

      it('hands out snapshots: a StoredRun read earlier does not change with later writes', async () => {
        const run = makeRun();
        await store.create(run, [publishEffect(1)]);
        const before = await store.get(run.txId);
        await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Completed }), [publishEffect(2)]);
        await store.clearOutbox(run.txId, 1);

        expect(before?.version).toBe(1);
        expect(before?.run.state).toBe(run.state);
        expect(before?.outbox.map((e) => e.version)).toEqual([1]);
      });
    });

    describe('outbox', () => {
      it('clears entries written at or before a version and keeps the newer ones', async () => {
        const run = makeRun();
        const e3 = publishEffect(3);
        await store.create(run, [publishEffect(1)]);
        await store.compareAndSet(run.txId, 1, next(run, {}), [publishEffect(2), scheduleEffect('t2')]);
        await store.compareAndSet(run.txId, 2, next(run, { updatedAt: run.updatedAt + 2 }), [e3]);

        await store.clearOutbox(run.txId, 2);
        expect((await store.get(run.txId))?.outbox).toEqual([{ version: 3, effect: e3 }]);
        await store.clearOutbox(run.txId, 3);
        expect((await store.get(run.txId))?.outbox).toEqual([]);
        // Clearing an unknown run or an empty outbox is harmless (recovery may race the owner).
        await store.clearOutbox(run.txId, 3);
        await store.clearOutbox('no-such-run', 1);
      });

      it('lists runs with entries written before a time, and not those without entries', async () => {
        const withOutbox = makeRun();
        const cleared = makeRun();
        const empty = makeRun();
        const [e1, e2] = [publishEffect(1), publishEffect(2)];
        const startedAt = Date.now();
        await store.create(withOutbox, [e1, e2]);
        await store.create(cleared, [publishEffect(3)]);
        await store.create(empty, []);
        await store.clearOutbox(cleared.txId, 1);

        // Bounds a minute away from now, so a backend whose clock is the server's still agrees.
        const pending = await store.listPendingOutbox(Date.now() + 60_000, 100);
        expect(pending.map((p) => p.txId)).toEqual([withOutbox.txId]);
        expect(pending[0]?.entries).toEqual([
          { version: 1, effect: e1 },
          { version: 1, effect: e2 },
        ]);
        expect(await store.listPendingOutbox(startedAt - 60_000, 100)).toEqual([]);
      });

      it('returns at most `limit` runs with pending entries', async () => {
        for (let i = 0; i < 5; i += 1) await store.create(makeRun(), [publishEffect(i)]);
        expect(await store.listPendingOutbox(Date.now() + 60_000, 3)).toHaveLength(3);
      });
    });

    describe('list', () => {
      async function seed(): Promise<Run[]> {
        const base = 1_800_000_000_000;
        const runs = [
          makeRun({ createdAt: base + 1, workflowId: 'orders', state: RunState.Running }),
          makeRun({ createdAt: base + 2, workflowId: 'refunds', state: RunState.Completed }),
          makeRun({ createdAt: base + 3, workflowId: 'orders', state: RunState.Completed }),
          makeRun({ createdAt: base + 4, workflowId: 'orders', state: RunState.Failed }),
          makeRun({ createdAt: base + 5, workflowId: 'refunds', state: RunState.Running }),
          makeRun({ createdAt: base + 6, workflowId: 'orders', state: RunState.Completed }),
        ];
        for (const run of runs) await store.create(run, []);
        return runs;
      }
      const ids = (runs: readonly Run[]): string[] => runs.map((r) => r.txId);
      const newestFirst = (runs: readonly Run[]): string[] => ids([...runs].reverse());

      it('lists every run newest first', async () => {
        const runs = await seed();
        const page = await store.list({}, 100);
        expect(ids(page.runs)).toEqual(newestFirst(runs));
        expect(page.nextCursor).toBeUndefined();
      });

      it('filters by state, workflowId and inclusive createdAfter/createdBefore, combined with AND', async () => {
        const runs = await seed();
        const at = (i: number): Run => runs[i] as Run;

        expect(ids((await store.list({ state: RunState.Completed }, 100)).runs)).toEqual(
          ids([at(5), at(2), at(1)]),
        );
        expect(ids((await store.list({ workflowId: 'refunds' }, 100)).runs)).toEqual(ids([at(4), at(1)]));
        expect(ids((await store.list({ createdAfter: at(2).createdAt }, 100)).runs)).toEqual(
          ids([at(5), at(4), at(3), at(2)]),
        );
        expect(ids((await store.list({ createdBefore: at(2).createdAt }, 100)).runs)).toEqual(
          ids([at(2), at(1), at(0)]),
        );
        expect(
          ids(
            (
              await store.list(
                {
                  state: RunState.Completed,
                  workflowId: 'orders',
                  createdAfter: at(1).createdAt,
                  createdBefore: at(4).createdAt,
                },
                100,
              )
            ).runs,
          ),
        ).toEqual(ids([at(2)]));
        expect((await store.list({ state: RunState.Cancelled }, 100)).runs).toEqual([]);
      });

      it('follows state changes made by compareAndSet', async () => {
        const run = makeRun({ state: RunState.Running });
        await store.create(run, []);
        await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Completed }), []);

        expect((await store.list({ state: RunState.Running }, 10)).runs).toEqual([]);
        const completed = await store.list({ state: RunState.Completed }, 10);
        expect(ids(completed.runs)).toEqual([run.txId]);
        expect(completed.runs[0]?.state).toBe(RunState.Completed);
      });

      it('pages with a cursor without duplicates or gaps, ties on createdAt included', async () => {
        const runs: Run[] = [];
        for (let i = 0; i < 23; i += 1) {
          // Groups of three share a createdAt: the order must still be total and stable.
          const run = makeRun({
            createdAt: 1_800_000_000_000 + Math.floor(i / 3),
            state: i % 2 === 0 ? RunState.Running : RunState.Completed,
          });
          runs.push(run);
          await store.create(run, []);
        }

        const readAll = async (filter: Parameters<StateStore['list']>[0]): Promise<string[]> => {
          const seen: string[] = [];
          let cursor: string | undefined;
          for (let pages = 0; pages < 50; pages += 1) {
            const page = await store.list(filter, 4, cursor);
            expect(page.runs.length).toBeLessThanOrEqual(4);
            seen.push(...ids(page.runs));
            cursor = page.nextCursor;
            if (cursor === undefined) return seen;
          }
          throw new Error('pagination did not end');
        };

        const all = await readAll({});
        const unpaged = ids((await store.list({}, 100)).runs);
        expect(all).toEqual(unpaged);
        expect(new Set(all).size).toBe(23);
        expect([...all].sort()).toEqual(ids(runs).sort());
        const createdAts = all.map((id) => runs.find((r) => r.txId === id)?.createdAt ?? 0);
        expect(createdAts).toEqual([...createdAts].sort((a, b) => b - a));

        const running = await readAll({ state: RunState.Running });
        expect(running).toEqual(ids((await store.list({ state: RunState.Running }, 100)).runs));
        expect(running).toHaveLength(12);
      });

      it('gives no cursor when a page holds the last run', async () => {
        const runs = await seed();
        const page = await store.list({}, runs.length);
        expect(page.runs).toHaveLength(runs.length);
        expect(page.nextCursor).toBeUndefined();
      });

      it('rejects a malformed cursor with INVALID_ARGUMENT', async () => {
        await seed();
        await expect(store.list({}, 10, '%%not-a-cursor%%')).rejects.toMatchObject({
          code: ErrorCode.InvalidArgument,
        });
      });
    });
  });
}
