import { systemClock, type Clock, type TimelineEntry, type TimelineStore } from '@multiagents/core';

/** A timeline as held: its entries by version and when it is forgotten. */
interface Held {
  readonly entries: Map<number, TimelineEntry>;
  expiresAt: number;
}

/**
 * Run timelines and once-only marks of one process (the embedded mode): a timeline is forgotten
 * `ttlMs` after its last append, a mark `ttlMs` after it was set. Expired items are dropped when
 * read, and by a sweep once they outnumber the live ones, so memory stays bounded by retention.
 *
 * @example
 * const timelines = new MemoryTimelineStore();
 * await timelines.append('tx-1', [entry], 86_400_000);
 * const entries = await timelines.get('tx-1');
 */
export class MemoryTimelineStore implements TimelineStore {
  private readonly timelines = new Map<string, Held>();
  private readonly marks = new Map<string, number>();
  private writesSinceSweep = 0;

  constructor(private readonly clock: Clock = systemClock) {}

  async append(txId: string, entries: readonly TimelineEntry[], ttlMs: number): Promise<void> {
    const now = this.clock.now();
    let held = this.timelines.get(txId);
    if (held === undefined || held.expiresAt <= now) {
      held = { entries: new Map(), expiresAt: 0 };
      this.timelines.set(txId, held);
    }
    for (const entry of entries) {
      if (!held.entries.has(entry.version)) held.entries.set(entry.version, structuredClone(entry));
    }
    held.expiresAt = now + ttlMs;
    this.maybeSweep(now);
  }

  async get(txId: string): Promise<TimelineEntry[] | undefined> {
    const held = this.timelines.get(txId);
    if (held === undefined) return undefined;
    if (held.expiresAt <= this.clock.now()) {
      this.timelines.delete(txId);
      return undefined;
    }
    return [...held.entries.values()].sort((a, b) => a.version - b.version).map((e) => structuredClone(e));
  }

  async markOnce(key: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    const expiresAt = this.marks.get(key);
    if (expiresAt !== undefined && expiresAt > now) return false;
    this.marks.set(key, now + ttlMs);
    this.maybeSweep(now);
    return true;
  }

  async close(): Promise<void> {}

  /** Drops expired items every so many writes (amortised: each write pays O(1) on average). */
  private maybeSweep(now: number): void {
    this.writesSinceSweep += 1;
    if (this.writesSinceSweep < 1_024 || this.writesSinceSweep < this.timelines.size + this.marks.size)
      return;
    this.writesSinceSweep = 0;
    for (const [txId, held] of this.timelines) if (held.expiresAt <= now) this.timelines.delete(txId);
    for (const [key, expiresAt] of this.marks) if (expiresAt <= now) this.marks.delete(key);
  }
}
