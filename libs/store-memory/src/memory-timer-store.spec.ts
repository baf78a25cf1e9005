import fc from 'fast-check';
import type { Timer } from '@multiagents/core';
import { timerStoreConformance } from '@multiagents/testing';
import { MemoryTimerStore } from './memory-timer-store';

timerStoreConformance('MemoryTimerStore', async () => ({ store: new MemoryTimerStore() }));

function timer(id: string, dueAt: number): Timer {
  return { id, txId: `tx-${id}`, dueAt, payload: { kind: 'sleep', step: 's', attempt: 1 } };
}

/** The obvious implementation (sort everything on every claim), to check the heap against. */
class ReferenceTimers {
  private readonly live = new Map<string, { timer: Timer; visibleAt: number; seq: number }>();
  private seq = 0;

  schedule(t: Timer): void {
    this.seq += 1;
    this.live.set(t.id, { timer: t, visibleAt: t.dueAt, seq: this.seq });
  }

  remove(id: string): void {
    this.live.delete(id);
  }

  claim(now: number, limit: number, leaseMs: number): string[] {
    const due = [...this.live.values()]
      .filter((r) => r.visibleAt <= now)
      .sort((a, b) => a.visibleAt - b.visibleAt || a.seq - b.seq)
      .slice(0, limit);
    for (const r of due) {
      this.seq += 1;
      r.visibleAt = now + leaseMs;
      r.seq = this.seq;
    }
    return due.map((r) => r.timer.id);
  }

  next(): number | undefined {
    const times = [...this.live.values()].map((r) => r.visibleAt);
    return times.length === 0 ? undefined : Math.min(...times);
  }
}

type Op =
  | { op: 'schedule'; id: string; dueAt: number }
  | { op: 'cancel'; id: string }
  | { op: 'complete'; id: string }
  | { op: 'claim'; advance: number; limit: number; leaseMs: number };

describe('MemoryTimerStore specifics', () => {
  it('claims exactly what a sort-everything reference claims, over random operation sequences', async () => {
    const id = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('schedule' as const), id, dueAt: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ op: fc.constant('cancel' as const), id }),
      fc.record({ op: fc.constant('complete' as const), id }),
      fc.record({
        op: fc.constant('claim' as const),
        advance: fc.integer({ min: 0, max: 5 }),
        limit: fc.integer({ min: 1, max: 4 }),
        leaseMs: fc.integer({ min: 1, max: 8 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        const store = new MemoryTimerStore();
        const reference = new ReferenceTimers();
        let now = 0;
        for (const o of ops) {
          if (o.op === 'schedule') {
            await store.schedule([timer(o.id, o.dueAt)]);
            reference.schedule(timer(o.id, o.dueAt));
          } else if (o.op === 'cancel' || o.op === 'complete') {
            await (o.op === 'cancel' ? store.cancel([o.id]) : store.complete([o.id]));
            reference.remove(o.id);
          } else {
            now += o.advance;
            const claimed = (await store.claimDue(now, o.limit, o.leaseMs)).map((t) => t.id);
            expect(claimed).toEqual(reference.claim(now, o.limit, o.leaseMs));
          }
          expect(await store.nextDueAt()).toBe(reference.next());
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('stays correct and compact under heavy rescheduling churn', async () => {
    const store = new MemoryTimerStore();
    for (let round = 0; round < 50; round += 1) {
      await store.schedule(Array.from({ length: 200 }, (_, i) => timer(`t${i}`, 10_000 - round * 100 + i)));
    }
    await store.cancel(Array.from({ length: 100 }, (_, i) => `t${i}`));
    const claimed = await store.claimDue(100_000, 1_000, 1_000);
    expect(claimed.map((t) => t.id)).toEqual(Array.from({ length: 100 }, (_, i) => `t${i + 100}`));
    expect(claimed[0]?.dueAt).toBe(10_000 - 49 * 100 + 100);
  });

  it('validates claim arguments', async () => {
    const store = new MemoryTimerStore();
    await expect(store.claimDue(0, 0, 0)).rejects.toMatchObject({
      problems: ['limit must be an integer >= 1', 'leaseMs must be a number > 0'],
    });
  });

  it('refuses calls after close', async () => {
    const store = new MemoryTimerStore();
    await store.close();
    await expect(store.schedule([timer('a', 1)])).rejects.toThrow('closed');
  });
});
