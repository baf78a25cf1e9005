/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import { randomUUID } from 'node:crypto';
import { EventType, RunState } from '@multiagents/contracts';
import type { TimelineEntry, TimelineStore } from '@multiagents/core';
import { waitFor } from './wait-for';

/** What an adapter's factory hands to {@link timelineStoreConformance}: a fresh, empty store per test. */
export interface TimelineStoreFixture {
  readonly store: TimelineStore;
  /** A second handle on the same data (another monitor replica), when the adapter has one. */
  readonly replica?: TimelineStore;
  readonly cleanup?: () => Promise<void>;
}

function entry(version: number, overrides: Partial<TimelineEntry> = {}): TimelineEntry {
  return {
    version,
    state: RunState.Running,
    time: 1_700_000_000_000 + version * 10,
    events: [{ type: EventType.StepStarted, state: RunState.Running, step: `s${version}`, attempt: 1 }],
    ...overrides,
  };
}

/**
 * The TimelineStore contract as Jest tests: entries kept in version order whatever order they
 * arrive in, a redelivered version ignored, unknown runs undefined, retention by `ttlMs` (a 1 ms
 * time to live, waited for by polling), `markOnce` a token for exactly one caller, across
 * replicas too, and its lease: one not extended runs out and is taken by another caller, one
 * extended in time outlasts it, and only the holder of a lease still on can extend it. Leases
 * run out in real time: short ones, waited for by polling, never by a fixed sleep.
 *
 * @example
 * timelineStoreConformance('memory', async () => ({ store: new MemoryTimelineStore() }));
 */
export function timelineStoreConformance(name: string, create: () => Promise<TimelineStoreFixture>): void {
  describe(`${name} TimelineStore conformance`, () => {
    let fixture: TimelineStoreFixture;
    let store: TimelineStore;

    beforeEach(async () => {
      fixture = await create();
      store = fixture.store;
    });

    afterEach(async () => {
      await store.close();
      await fixture.replica?.close();
      await fixture.cleanup?.();
    });

    it('answers undefined for a run it knows nothing about', async () => {
      expect(await store.get(`tx-${randomUUID()}`)).toBeUndefined();
    });

    it('keeps entries in version order, every field, whatever order they arrive in', async () => {
      const txId = `tx-${randomUUID()}`;
      const done = entry(3, {
        state: RunState.Completed,
        events: [{ type: EventType.WorkflowCompleted, state: RunState.Completed, durationMs: 42 }],
      });
      await store.append(txId, [done], 60_000);
      await store.append(txId, [entry(1), entry(2)], 60_000);
      expect(await store.get(txId)).toEqual([entry(1), entry(2), done]);
    });

    it('ignores a version it holds already (a redelivered event changes nothing)', async () => {
      const txId = `tx-${randomUUID()}`;
      await store.append(txId, [entry(1)], 60_000);
      await store.append(txId, [entry(1, { state: RunState.Failed }), entry(2)], 60_000);
      expect(await store.get(txId)).toEqual([entry(1), entry(2)]);
    });

    it('keeps runs apart, ids needing escaping included', async () => {
      const ids = [`a.b:${randomUUID()}`, `a b/${randomUUID()}`, `ä{x}*>${randomUUID()}`];
      for (const [i, id] of ids.entries()) await store.append(id, [entry(i + 1)], 60_000);
      for (const [i, id] of ids.entries()) expect(await store.get(id)).toEqual([entry(i + 1)]);
    });

    it('sees what another replica appended', async () => {
      const other = fixture.replica ?? store;
      const txId = `tx-${randomUUID()}`;
      await store.append(txId, [entry(1)], 60_000);
      await other.append(txId, [entry(2)], 60_000);
      expect(await other.get(txId)).toEqual([entry(1), entry(2)]);
      expect(await store.get(txId)).toEqual([entry(1), entry(2)]);
    });

    it('keeps every entry when replicas append to one run at once', async () => {
      const other = fixture.replica ?? store;
      const txId = `tx-${randomUUID()}`;
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 === 0 ? store : other).append(txId, [entry(i + 1)], 60_000),
        ),
      );
      expect((await store.get(txId))?.map((e) => e.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });

    it('forgets a timeline once its time to live ran out', async () => {
      const txId = `tx-${randomUUID()}`;
      await store.append(txId, [entry(1)], 1);
      await waitFor(async () => (await store.get(txId)) === undefined, { description: 'timeline expired' });
      // Appending again starts a fresh timeline: the expired entries do not come back.
      await store.append(txId, [entry(2)], 60_000);
      expect(await store.get(txId)).toEqual([entry(2)]);
    });

    it('marks a key once: one caller of many wins, the others (replicas too) are told no', async () => {
      const other = fixture.replica ?? store;
      const key = `stuck:${randomUUID()}:v3`;
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? store : other).markOnce(key, 60_000)),
      );
      expect(answers.filter((token) => token !== undefined)).toEqual([expect.any(String)]);
      expect(await store.markOnce(key, 60_000)).toBeUndefined();
      expect(await store.markOnce(`${key}:other`, 60_000)).toEqual(expect.any(String));
    });

    it('marks a key again once its mark expired', async () => {
      const key = `stuck:${randomUUID()}`;
      expect(await store.markOnce(key, 1)).toEqual(expect.any(String));
      // Taken exactly once the first mark expired; never twice.
      let wins = 0;
      await waitFor(
        async () => {
          if ((await store.markOnce(key, 60_000)) !== undefined) wins += 1;
          return wins > 0;
        },
        { description: 'mark expired' },
      );
      expect(await store.markOnce(key, 60_000)).toBeUndefined();
      expect(wins).toBe(1);
    });

    it('lets a lease nobody extends run out: one caller of many takes the key then, and the first holder cannot extend it', async () => {
      const other = fixture.replica ?? store;
      const key = `stuck:${randomUUID()}`;
      // A replica takes the lease and dies before extending it.
      const first = await store.markOnce(key, 1);
      expect(first).toEqual(expect.any(String));
      // Polled with 1 ms extensions: refused once the lease has run out (an extension of a lease
      // still on keeps it on for 1 ms more).
      await waitFor(async () => !(await store.extendMark(key, first as string, 1)), {
        description: 'lease ran out',
      });
      expect(await store.extendMark(key, first as string, 60_000)).toBe(false);
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? store : other).markOnce(key, 60_000)),
      );
      const taken = answers.filter((token): token is string => token !== undefined);
      expect(taken).toHaveLength(1);
      expect(taken[0]).not.toBe(first);
      // The late holder cannot extend the new holder's lease (nor shorten it); the new holder can.
      expect(await store.extendMark(key, first as string, 1)).toBe(false);
      expect(await other.extendMark(key, first as string, 1)).toBe(false);
      expect(await other.extendMark(key, taken[0] as string, 60_000)).toBe(true);
      expect(await store.markOnce(key, 60_000)).toBeUndefined();
    });

    it('keeps a lease extended in time for its new time to live, past when the lease would have run out', async () => {
      const other = fixture.replica ?? store;
      const kept = `stuck:${randomUUID()}:kept`;
      const lapsed = `stuck:${randomUUID()}:lapsed`;
      // Long enough for the extension to land before the lease runs out, even on a slow machine.
      const leaseMs = 1_000;
      const token = await store.markOnce(kept, leaseMs);
      // Taken after `kept` for as long: once it is free, the lease of `kept` has run out too.
      expect(await store.markOnce(lapsed, leaseMs)).toEqual(expect.any(String));
      expect(await store.extendMark(kept, token as string, 60_000)).toBe(true);
      await waitFor(async () => (await other.markOnce(lapsed, 60_000)) !== undefined, {
        description: 'the lease nobody extended ran out',
      });
      expect(await other.markOnce(kept, 60_000)).toBeUndefined();
      expect(await store.markOnce(kept, 60_000)).toBeUndefined();
      // Still its holder's: extended again (by any replica that has the token).
      expect(await other.extendMark(kept, token as string, 60_000)).toBe(true);
    });

    it("refuses to extend a hold it was not given: another caller's token, another key's, a key never taken", async () => {
      const other = fixture.replica ?? store;
      const key = `stuck:${randomUUID()}`;
      const token = await store.markOnce(key, 60_000);
      const elsewhere = await other.markOnce(`${key}:b`, 60_000);
      expect([token, elsewhere]).toEqual([expect.any(String), expect.any(String)]);
      expect(await other.extendMark(key, 'not-a-token-it-gave', 1)).toBe(false);
      expect(await other.extendMark(key, elsewhere as string, 1)).toBe(false);
      expect(await store.extendMark(`${key}:never`, token as string, 60_000)).toBe(false);
      expect(await store.markOnce(`${key}:never`, 60_000)).toEqual(expect.any(String));
      // The refusals changed nothing: the holder still holds the key and can extend it.
      expect(await other.markOnce(key, 60_000)).toBeUndefined();
      expect(await store.extendMark(key, token as string, 60_000)).toBe(true);
    });
  });
}
