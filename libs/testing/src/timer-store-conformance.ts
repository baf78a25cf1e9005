/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import type { Timer, TimerStore } from '@multiagents/core';

/** What an adapter's factory hands to {@link timerStoreConformance}: a fresh, empty store per test. */
export interface TimerStoreFixture {
  readonly store: TimerStore;
  /** Runs after `store.close()`. */
  readonly cleanup?: () => Promise<void>;
}

const T0 = 1_800_000_000_000;

function timer(id: string, dueAt: number, attempt = 1): Timer {
  return { id, txId: `tx-${id}`, dueAt, payload: { kind: 'retry', step: 'charge', attempt } };
}

/**
 * The TimerStore contract (durable timers that fire once across orchestrators, with a claim
 * lease so a crashed claimer loses nothing) as Jest tests, run by every adapter. Time is passed
 * in explicitly, so nothing here sleeps.
 *
 * @example
 * timerStoreConformance('memory', async () => ({ store: new MemoryTimerStore() }));
 */
export function timerStoreConformance(name: string, factory: () => Promise<TimerStoreFixture>): void {
  describe(`TimerStore conformance: ${name}`, () => {
    let fixture: TimerStoreFixture;
    let store: TimerStore;

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async () => {
      await store.close();
      await fixture.cleanup?.();
    });

    const idsOf = (timers: readonly Timer[]): string[] => timers.map((t) => t.id);

    it('claims only due timers, earliest first, with their content intact', async () => {
      const a = timer('a', T0 + 100);
      const b = timer('b', T0 + 50, 3);
      const later = timer('later', T0 + 10_000);
      await store.schedule([a, later, b]);

      const claimed = await store.claimDue(T0 + 100, 10, 1_000);
      expect(claimed).toEqual([b, a]);
      expect(await store.claimDue(T0 + 100, 10, 1_000)).toEqual([]);
    });

    it('claims at most `limit` timers', async () => {
      await store.schedule([timer('a', T0 + 1), timer('b', T0 + 2), timer('c', T0 + 3)]);
      expect(idsOf(await store.claimDue(T0 + 10, 2, 1_000))).toEqual(['a', 'b']);
      expect(idsOf(await store.claimDue(T0 + 10, 2, 1_000))).toEqual(['c']);
    });

    it('hides a claimed timer until its lease expires, then offers it again', async () => {
      await store.schedule([timer('a', T0)]);
      expect(idsOf(await store.claimDue(T0, 10, 5_000))).toEqual(['a']);
      expect(await store.claimDue(T0 + 4_999, 10, 5_000)).toEqual([]);
      // The claimer crashed without completing: another one gets the timer after the lease.
      expect(idsOf(await store.claimDue(T0 + 5_000, 10, 5_000))).toEqual(['a']);
    });

    it('forgets completed timers, claimed or not', async () => {
      await store.schedule([timer('a', T0), timer('b', T0 + 1), timer('c', T0 + 2)]);
      await store.claimDue(T0 + 1, 10, 1_000);
      await store.complete(['a', 'c', 'unknown']);

      expect(idsOf(await store.claimDue(T0 + 60_000, 10, 1_000))).toEqual(['b']);
    });

    it('replaces a timer scheduled again with the same id', async () => {
      await store.schedule([timer('a', T0)]);
      const moved = timer('a', T0 + 5_000, 2);
      await store.schedule([moved]);

      expect(await store.claimDue(T0 + 1_000, 10, 1_000)).toEqual([]);
      expect(await store.nextDueAt()).toBe(T0 + 5_000);
      expect(await store.claimDue(T0 + 5_000, 10, 1_000)).toEqual([moved]);
    });

    it('makes a claimed timer that is scheduled again claimable at its new due time', async () => {
      await store.schedule([timer('a', T0)]);
      await store.claimDue(T0, 10, 60_000);
      await store.schedule([timer('a', T0 + 10)]);
      expect(idsOf(await store.claimDue(T0 + 10, 10, 60_000))).toEqual(['a']);
    });

    it('cancels timers, ignoring unknown ids', async () => {
      await store.schedule([timer('a', T0), timer('b', T0)]);
      await store.cancel(['a', 'nope']);
      expect(idsOf(await store.claimDue(T0, 10, 1_000))).toEqual(['b']);
    });

    it('never hands one timer to two concurrent claimers within a lease', async () => {
      const timers = Array.from({ length: 20 }, (_, i) => timer(`t${i}`, T0 + i));
      await store.schedule(timers);
      const [first, second] = await Promise.all([
        store.claimDue(T0 + 100, 15, 10_000),
        store.claimDue(T0 + 100, 15, 10_000),
      ]);
      const all = [...idsOf(first), ...idsOf(second)];

      expect(new Set(all).size).toBe(all.length);
      expect(all.sort()).toEqual(idsOf(timers).sort());
    });

    it('reports the earliest due time, or undefined when nothing is scheduled', async () => {
      expect(await store.nextDueAt()).toBeUndefined();
      await store.schedule([timer('a', T0 + 300), timer('b', T0 + 100), timer('c', T0 + 200)]);
      expect(await store.nextDueAt()).toBe(T0 + 100);
      await store.cancel(['b']);
      expect(await store.nextDueAt()).toBe(T0 + 200);
      await store.complete(['a', 'c']);
      expect(await store.nextDueAt()).toBeUndefined();
    });

    it('does not report a claimed timer as due before its lease ends', async () => {
      await store.schedule([timer('a', T0), timer('b', T0 + 50_000)]);
      await store.claimDue(T0, 10, 10_000);
      // A poller sleeping until nextDueAt must not spin on the timer it (or a peer) holds.
      expect(await store.nextDueAt()).toBe(T0 + 10_000);
    });
  });
}
