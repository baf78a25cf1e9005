import { systemClock, type Clock, type TimelineEntry, type TimelineStore } from '@multiagents/core';

/** A timeline as held: its entries by version and when it is forgotten. */
interface Held {
  readonly entries: Map<number, TimelineEntry>;
  expiresAt: number;
}

/** A mark as held: who took it (its token) and when it ends. */
interface Mark {
  readonly token: string;
  expiresAt: number;
}

/**
 * Run timelines and once-only marks of one process (the embedded mode): a timeline is forgotten
 * `ttlMs` after its last append, a mark when its lease (or the time it was extended to) ends.
 * Expired items are dropped when read, and by a sweep once they outnumber the live ones, so
 * memory stays bounded by retention.
 *
 * @example
 * const timelines = new MemoryTimelineStore();
 * await timelines.append('tx-1', [entry], 86_400_000);
 * const entries = await timelines.get('tx-1');
 */
export class MemoryTimelineStore implements TimelineStore {
  private readonly timelines = new Map<string, Held>();
  private readonly marks = new Map<string, Mark>();
  /** Names the holds this store hands out: one process, so a count is unique. */
  private marksTaken = 0;
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

  async markOnce(key: string, leaseMs: number): Promise<string | undefined> {
    const now = this.clock.now();
    const held = this.marks.get(key);
    if (held !== undefined && held.expiresAt > now) return undefined;
    this.marksTaken += 1;
    const token = `mark-${this.marksTaken}`;
    this.marks.set(key, { token, expiresAt: now + leaseMs });
    this.maybeSweep(now);
    return token;
  }

  async extendMark(key: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    const held = this.marks.get(key);
    if (held === undefined || held.token !== token || held.expiresAt <= now) return false;
    held.expiresAt = now + ttlMs;
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
    for (const [key, mark] of this.marks) if (mark.expiresAt <= now) this.marks.delete(key);
  }
}
