import { ValidationError } from '@multiagents/contracts';
import { MinHeap, type Timer } from '@multiagents/core';

interface TimerRecord {
  timer: Timer;
  /** When a claim may take it: its due time, or the end of the lease it is under. */
  visibleAt: number;
  /** Bumped on every change, so older heap entries for this timer read as stale. */
  gen: number;
  /** Order of its last push: ties on time come out first-in first-out, also after compaction. */
  seq: number;
  /** Claimed since it was last scheduled: what `complete` removes. */
  claimed: boolean;
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
 * The timers of the memory run store: by id in a map, ordered by the time a claim may take them
 * in a binary heap with lazy deletion (a cancelled, completed, rescheduled or claimed timer leaves
 * a stale heap entry that is skipped when met), so claiming costs O(k log n) and never sorts. A
 * claim moves the timer's visible time to the end of its lease, which is how a claimed but never
 * completed timer comes back. Synchronous: the store changes timers inside its atomic commits.
 */
export class TimerQueue {
  private readonly timers = new Map<string, TimerRecord>();
  private readonly heap = new MinHeap<HeapEntry>((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq));
  private seq = 0;

  /** Timers held. */
  get size(): number {
    return this.timers.size;
  }

  /** Adds or replaces timers by id. */
  schedule(timers: readonly Timer[]): void {
    for (const timer of timers) {
      const existing = this.timers.get(timer.id);
      // Rescheduling replaces the timer outright: a lease on the old one does not carry over.
      const record: TimerRecord = existing ?? {
        timer,
        visibleAt: timer.dueAt,
        gen: 0,
        seq: 0,
        claimed: false,
      };
      record.timer = timer;
      record.visibleAt = timer.dueAt;
      record.claimed = false;
      record.gen += 1;
      this.timers.set(timer.id, record);
      this.push(record);
    }
  }

  /** Claims up to `limit` due timers for `leaseMs` (see `RunStore.claimDueTimers`). */
  claimDue(now: number, limit: number, leaseMs: number): Timer[] {
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
      record.claimed = true;
      record.visibleAt = now + leaseMs;
      record.gen += 1;
      this.push(record);
    }
    return claimed.map((record) => record.timer);
  }

  /** Removes timers by id (unknown ids are ignored). */
  remove(timerIds: readonly string[]): void {
    for (const id of timerIds) {
      const record = this.timers.get(id);
      if (record !== undefined) this.drop(record);
    }
  }

  /**
   * Removes the claimed timers among these (they fired and changed nothing). One scheduled again
   * since its claim stays: a heartbeat that moved a deadline while its old copy fired is why the
   * firing changed nothing.
   */
  complete(timerIds: readonly string[]): void {
    for (const id of timerIds) {
      const record = this.timers.get(id);
      if (record?.claimed === true) this.drop(record);
    }
  }

  private drop(record: TimerRecord): void {
    record.gen += 1;
    this.timers.delete(record.timer.id);
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
}
