import { MinHeap } from '@multiagents/core';
import { ValidationError } from '@multiagents/contracts';
import type { Timer, TimerStore } from '@multiagents/core';

interface TimerRecord {
  timer: Timer;
  /** When a claim may take it: its due time, or the end of the lease it is under. */
  visibleAt: number;
  /** Bumped on every change, so older heap entries for this timer read as stale. */
  gen: number;
  /** Order of its last push: ties on time come out first-in first-out, also after compaction. */
  seq: number;
}

interface HeapEntry {
  readonly at: number;
  /** Insertion order: equal times come out first-in first-out. */
  readonly seq: number;
  readonly gen: number;
  readonly record: TimerRecord;
}

/** Above this many heap entries per live timer, the heap is rebuilt without the stale ones. */
const COMPACT_FACTOR = 4;
const COMPACT_MIN = 1024;

/**
 * An in-process {@link TimerStore}: timers by id in a map, ordered by the time a claim may take
 * them in a binary heap with lazy deletion (a cancelled, completed, rescheduled or claimed timer
 * leaves a stale heap entry that is skipped when met), so claiming costs O(k log n) and never
 * sorts. A claim moves the timer's visible time to the end of its lease, which is how a claimed
 * but never completed timer comes back.
 *
 * @example
 * const timers = new MemoryTimerStore();
 * await timers.schedule([{ id: 'tx1:charge:retry:2', txId: 'tx1', dueAt, payload }]);
 * const due = await timers.claimDue(Date.now(), 100, 30_000);
 */
export class MemoryTimerStore implements TimerStore {
  private readonly timers = new Map<string, TimerRecord>();
  private readonly heap = new MinHeap<HeapEntry>((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq));
  private seq = 0;
  private closed = false;

  async schedule(timers: readonly Timer[]): Promise<void> {
    this.assertOpen();
    for (const timer of timers) {
      const existing = this.timers.get(timer.id);
      // Rescheduling replaces the timer outright: a lease on the old one does not carry over.
      const record: TimerRecord = existing ?? { timer, visibleAt: timer.dueAt, gen: 0, seq: 0 };
      record.timer = timer;
      record.visibleAt = timer.dueAt;
      record.gen += 1;
      this.timers.set(timer.id, record);
      this.push(record);
    }
  }

  async cancel(timerIds: readonly string[]): Promise<void> {
    this.assertOpen();
    this.remove(timerIds);
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    this.assertOpen();
    const problems: string[] = [];
    if (!Number.isInteger(limit) || limit < 1) problems.push('limit must be an integer >= 1');
    if (!Number.isFinite(leaseMs) || leaseMs <= 0) problems.push('leaseMs must be a number > 0');
    if (problems.length > 0) throw new ValidationError('claimDue', problems);

    const claimed: TimerRecord[] = [];
    while (claimed.length < limit) {
      const top = this.heap.peek();
      if (top === undefined) break;
      if (top.gen !== top.record.gen) {
        this.heap.pop();
        continue;
      }
      if (top.at > now) break;
      this.heap.pop();
      claimed.push(top.record);
    }
    // Leases are pushed after the loop, or a short lease could hand one timer out twice here.
    for (const record of claimed) {
      record.visibleAt = now + leaseMs;
      record.gen += 1;
      this.push(record);
    }
    return claimed.map((record) => record.timer);
  }

  async complete(timerIds: readonly string[]): Promise<void> {
    this.assertOpen();
    this.remove(timerIds);
  }

  async nextDueAt(): Promise<number | undefined> {
    this.assertOpen();
    for (;;) {
      const top = this.heap.peek();
      if (top === undefined) return undefined;
      if (top.gen === top.record.gen) return top.at;
      this.heap.pop();
    }
  }

  /** Further calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private remove(timerIds: readonly string[]): void {
    for (const id of timerIds) {
      const record = this.timers.get(id);
      if (record === undefined) continue;
      record.gen += 1;
      this.timers.delete(id);
    }
  }

  private push(record: TimerRecord): void {
    this.seq += 1;
    record.seq = this.seq;
    this.heap.push({ at: record.visibleAt, seq: record.seq, gen: record.gen, record });
    if (this.heap.size > COMPACT_MIN && this.heap.size > COMPACT_FACTOR * this.timers.size) {
      const live: HeapEntry[] = [];
      for (const r of this.timers.values()) live.push({ at: r.visibleAt, seq: r.seq, gen: r.gen, record: r });
      this.heap.reset(live);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('MemoryTimerStore is closed');
  }
}
