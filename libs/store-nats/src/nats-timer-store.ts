import { randomBytes } from 'node:crypto';
import { ValidationError } from '@multiagents/contracts';
import type { Timer, TimerStore } from '@multiagents/core';
import { KvClient, fromBytes, toBytes } from './kv-client';
import { mapLimit } from './map-limit';
import { BucketKind, NatsKeys, windowStart, type TimerDueKey } from './nats-keys';
import {
  DEFAULT_NATS_STORE_OPTIONS,
  NATS_STORE_OPTION_KEYS,
  checkPositiveInteger,
  describeValue,
  resolveNatsStoreOptions,
  type NatsStoreOptions,
  type ResolvedNatsStoreOptions,
} from './nats-store-options';

/** Options of {@link NatsTimerStore}. */
export interface NatsTimerStoreOptions extends NatsStoreOptions {
  /** Width of the time slots due entries are grouped in (a claim reads whole slots). */
  readonly slotMs?: number;
  /**
   * How often the slot directory is re-read from the server. A timer scheduled by another
   * process is seen at most this late; this process's own writes are seen at once.
   */
  readonly slotRefreshMs?: number;
}

/** Defaults of {@link NatsTimerStoreOptions}. */
export const DEFAULT_NATS_TIMER_STORE_OPTIONS = Object.freeze({
  ...DEFAULT_NATS_STORE_OPTIONS,
  slotMs: 5_000,
  slotRefreshMs: 1_000,
});

/** The value of `t.<timerId>`: the truth about a timer. */
interface TimerRecord {
  readonly timer: Timer;
  /** When a claim may take it: its due time, or the end of the lease it is under. */
  readonly visibleAt: number;
  /** Names the one due entry that belongs to this version of the record. */
  readonly placement: string;
}

/** What became of one due entry a claim looked at. */
type ClaimOutcome =
  | { readonly kind: 'claimed'; readonly timer: Timer }
  /** The entry was dead (or another claimer won): it is removed. */
  | { readonly kind: 'gone' }
  /** Another claimer is between writing its new entry and its compare-and-set: left alone. */
  | { readonly kind: 'busy' };

/** KV requests in flight at once for one batch. */
const CONCURRENCY = 32;
const OPTION_KEYS = [...NATS_STORE_OPTION_KEYS, 'slotMs', 'slotRefreshMs'];

/**
 * A {@link TimerStore} on NATS KV: timers fire once across orchestrators, and are found by their
 * due-time slot, without reading every timer.
 *
 * **Layout.** `t.<id>` (bucket `<prefix>-timers`) holds the timer, the time a claim may take it
 * (`visibleAt`: its due time, or the end of its lease) and a placement token. The due index,
 * `d.<slot>.<visibleAt>.<id>.<placement>` (bucket `<prefix>-timer-due`), groups timers in slots
 * of `slotMs`; `b.<slot>` (bucket `<prefix>-timer-slots`) lists the slots in use. An entry counts
 * only while its placement is the record's: every write makes a new placement, so a stale entry
 * (rescheduled, claimed, cancelled, or left by a crash) is recognised and removed, and a removal
 * never hits a newer entry (no key is ever written twice).
 *
 * **Claiming** is a compare-and-set on the record: the new due entry (in the lease's slot) is
 * written first, then `kv.update(t.<id>, …, revision)` moves `visibleAt` to `now + leaseMs`; the
 * claimer whose update wins owns the timer until then, and a crash at any point leaves either the
 * old entry or the new one valid, never neither. A new entry carries the revision its claimer
 * read, so another claimer tells an entry whose compare-and-set is still in flight (left alone)
 * from a dead one (removed). `schedule` writes the record first, then its entry (a crash in
 * between is repaired by outbox recovery, which schedules again), then removes the previous
 * entry (the record is the id → slot index). A slot's directory entry is removed
 * when a claim finds it empty, guarded by its revision (writers put it after their entry), so a
 * slot written to meanwhile stays.
 *
 * **Costs.** The slot directory lives in memory, re-read every `slotRefreshMs` (one request; its
 * size is the number of slots in use, e.g. at most 720 for timers spread over an hour with 5 s
 * slots). A claim with nothing due makes no request. Otherwise it reads one filtered key
 * listing per due slot, and the current slot again only once something in it is due (or this
 * process wrote into it, or `slotRefreshMs` passed); NATS 2.9 matches that filter against every
 * due entry of the bucket (measured: ~160 ms of server time at 1M entries, ~4 ms at 10k). Then per
 * claimed timer: one read, one entry write, one compare-and-set, one purge (plus one directory
 * write per lease slot). `schedule` costs one read, two writes and one purge per timer plus one
 * directory write per slot; `complete` and `cancel` one read and two purges. `nextDueAt` reads
 * the earliest slot, then records until the first valid one.
 *
 * @example
 * const timers = new NatsTimerStore({ servers: 'nats://127.0.0.1:4222' });
 * await timers.schedule([{ id: 'tx1:charge:retry:2', txId: 'tx1', dueAt, payload }]);
 * const due = await timers.claimDue(Date.now(), 100, 30_000);
 */
export class NatsTimerStore implements TimerStore {
  private readonly options: ResolvedNatsStoreOptions & {
    readonly slotMs: number;
    readonly slotRefreshMs: number;
  };
  private readonly keys: NatsKeys;
  private readonly kv: KvClient;
  /** Slots known to be in use, each with the write count of this process's last entry there. */
  private readonly slots = new Map<number, number>();
  /** Counts this process's placements (and refreshes), so a later write is told from an earlier one. */
  private writes = 0;
  private refreshedAt = -Infinity;
  private refreshing: Promise<void> | undefined;
  /**
   * The current (not yet past) slot's last scan, when it left only future entries: it is not
   * read again before its earliest entry is due, nor for `slotRefreshMs` (the lateness already
   * accepted for other processes' writes), unless this process writes into it.
   */
  private readonly quietSlots = new Map<number, { readonly scannedAt: number; readonly nextAt: number }>();

  constructor(options: NatsTimerStoreOptions) {
    const problems: string[] = [];
    const base = resolveNatsStoreOptions(options, OPTION_KEYS, problems);
    const given: NatsTimerStoreOptions = typeof options === 'object' && options !== null ? options : {};
    const slotMs = given.slotMs ?? DEFAULT_NATS_TIMER_STORE_OPTIONS.slotMs;
    checkPositiveInteger(slotMs, 'slotMs', problems);
    const slotRefreshMs = given.slotRefreshMs ?? DEFAULT_NATS_TIMER_STORE_OPTIONS.slotRefreshMs;
    checkPositiveInteger(slotRefreshMs, 'slotRefreshMs', problems);
    if (problems.length > 0) throw new ValidationError('NatsTimerStore options', problems);
    this.options = { ...base, slotMs, slotRefreshMs };
    this.keys = new NatsKeys(base.prefix);
    this.kv = new KvClient(base, this.keys, 'NatsTimerStore', [
      BucketKind.Timers,
      BucketKind.TimerDue,
      BucketKind.TimerSlots,
    ]);
  }

  /** Connects and creates the buckets (optional: the first operation does it). */
  start(): Promise<void> {
    return this.kv.start();
  }

  async schedule(timers: readonly Timer[]): Promise<void> {
    assertTimers(timers);
    // The last of several timers with one id wins, as if they were scheduled one after another.
    const byId = new Map<string, Timer>();
    for (const timer of timers) byId.set(timer.id, timer);
    const list = [...byId.values()];
    const previous = await mapLimit(list, CONCURRENCY, (timer) =>
      this.kv.get(BucketKind.Timers, this.keys.timer(timer.id)),
    );
    // The record first, its entry after (placement base 0: a mismatch can only mean replaced).
    // A crash in between leaves a timer without entry; the outbox that asked for it schedules
    // it again on recovery.
    const records = list.map((timer): TimerRecord => ({
      timer,
      visibleAt: timer.dueAt,
      placement: placement(0),
    }));
    await mapLimit(records, CONCURRENCY, (record) =>
      this.kv.put(BucketKind.Timers, this.keys.timer(record.timer.id), toBytes(record)),
    );
    await this.placeEntries(records);
    // The record is the id → slot index: the previous entry goes (its key is never written
    // again, so removing it cannot hit anything newer).
    await mapLimit(previous, CONCURRENCY, async (record, i) => {
      if (record === undefined) return;
      const old = fromBytes<TimerRecord>(record.data);
      await this.kv
        .purge(BucketKind.TimerDue, this.dueKey((list[i] as Timer).id, old))
        .catch(() => undefined);
    });
  }

  async cancel(timerIds: readonly string[]): Promise<void> {
    await this.remove(timerIds);
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    const problems: string[] = [];
    if (!Number.isFinite(now) || now < 0) problems.push('now must be a time >= 0');
    if (!Number.isInteger(limit) || limit < 1) problems.push('limit must be an integer >= 1');
    if (!Number.isFinite(leaseMs) || leaseMs <= 0) problems.push('leaseMs must be a number > 0');
    if (problems.length > 0) throw new ValidationError('claimDue', problems);

    await this.refreshSlots();
    const claimed: Timer[] = [];
    for (const slot of [...this.slots.keys()].filter((s) => s <= now).sort((a, b) => a - b)) {
      if (claimed.length >= limit) break;
      const past = slot + this.options.slotMs <= now;
      const quiet = this.quietSlots.get(slot);
      if (
        !past &&
        quiet !== undefined &&
        now < quiet.nextAt &&
        Date.now() - quiet.scannedAt < this.options.slotRefreshMs
      )
        continue;
      this.quietSlots.delete(slot);
      const mark = this.slots.get(slot);
      // Read before the scan: the guard that keeps a slot someone wrote to meanwhile.
      const directory = past
        ? await this.kv.get(BucketKind.TimerSlots, this.keys.timerSlot(slot))
        : undefined;
      if (past && directory === undefined) {
        this.slots.delete(slot); // removed by another claimer; a writer puts it back after its entry
        continue;
      }
      const entries = (await this.kv.keys(BucketKind.TimerDue, this.keys.timerDueFilter(slot)))
        .map((key) => this.keys.parseTimerDue(key))
        .filter((e): e is TimerDueKey => e !== undefined);
      const due = entries
        .filter((e) => e.visibleAt <= now)
        .sort(
          (a, b) => a.visibleAt - b.visibleAt || (a.idToken < b.idToken ? -1 : a.idToken > b.idToken ? 1 : 0),
        );
      let busy = false;
      let next = 0;
      while (claimed.length < limit && next < due.length) {
        const round = due.slice(next, next + (limit - claimed.length));
        next += round.length;
        const outcomes = await this.claimRound(round, now, leaseMs);
        for (const outcome of outcomes) {
          if (outcome.kind === 'claimed') claimed.push(outcome.timer);
          else if (outcome.kind === 'busy') busy = true;
        }
      }
      // Quiet only if nothing was placed here meanwhile (a short lease, or a schedule).
      if (!past && !busy && next === due.length && this.slots.get(slot) === mark) {
        const nextAt = entries.reduce(
          (min, e) => (e.visibleAt > now ? Math.min(min, e.visibleAt) : min),
          Infinity,
        );
        this.quietSlots.set(slot, { scannedAt: Date.now(), nextAt });
      }
      if (directory !== undefined && !busy && next === due.length && due.length === entries.length) {
        if (await this.kv.purgeUpTo(BucketKind.TimerSlots, this.keys.timerSlot(slot), directory.revision)) {
          this.slots.delete(slot);
        }
      }
    }
    for (const slot of this.quietSlots.keys()) if (!this.slots.has(slot)) this.quietSlots.delete(slot);
    return claimed;
  }

  async complete(timerIds: readonly string[]): Promise<void> {
    await this.remove(timerIds);
  }

  async nextDueAt(): Promise<number | undefined> {
    await this.refreshSlots();
    for (const slot of [...this.slots.keys()].sort((a, b) => a - b)) {
      const entries = (await this.kv.keys(BucketKind.TimerDue, this.keys.timerDueFilter(slot)))
        .map((key) => this.keys.parseTimerDue(key))
        .filter((e): e is TimerDueKey => e !== undefined)
        .sort((a, b) => a.visibleAt - b.visibleAt);
      // Each live timer has exactly one entry matching its record, so the first match is the
      // earliest of the slot (and slots are in order).
      for (const entry of entries) {
        const record = await this.kv.get(BucketKind.Timers, this.keys.timerByToken(entry.idToken));
        if (record === undefined) continue;
        const value = fromBytes<TimerRecord>(record.data);
        if (value.placement === entry.placement) return value.visibleAt;
      }
    }
    return undefined;
  }

  /** Further calls are refused; closes the connection if the store opened it. */
  async close(): Promise<void> {
    await this.kv.close();
  }

  /** Deletes this prefix's timer buckets with all their data (tests and decommissioning). */
  async destroy(): Promise<void> {
    await this.kv.destroy();
    this.slots.clear();
    this.quietSlots.clear();
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * Writes the records' due entries, then the directory entry of each slot they fall in, once
   * per slot: the order the slot guard needs (see claimDue).
   */
  private async placeEntries(records: readonly TimerRecord[]): Promise<void> {
    await mapLimit(records, CONCURRENCY, (record) =>
      this.kv.put(BucketKind.TimerDue, this.dueKey(record.timer.id, record), toBytes({})),
    );
    const slots = [...new Set(records.map((record) => this.slotOf(record.visibleAt)))];
    await mapLimit(slots, CONCURRENCY, (slot) =>
      this.kv.put(BucketKind.TimerSlots, this.keys.timerSlot(slot), toBytes({})),
    );
    for (const slot of slots) {
      this.writes += 1;
      this.slots.set(slot, this.writes);
      this.quietSlots.delete(slot);
    }
  }

  /**
   * Claims the timers behind some due entries: read the records, write the new entries (in the
   * lease's slot), compare-and-set the records, then remove whichever entries are dead.
   */
  private async claimRound(
    entries: readonly TimerDueKey[],
    now: number,
    leaseMs: number,
  ): Promise<ClaimOutcome[]> {
    const records = await mapLimit(entries, CONCURRENCY, (entry) =>
      this.kv.get(BucketKind.Timers, this.keys.timerByToken(entry.idToken)),
    );
    const outcomes: ClaimOutcome[] = [];
    const dead: string[] = [];
    const claims: Array<{ index: number; revision: number; leased: TimerRecord; old: string }> = [];
    for (const [index, entry] of entries.entries()) {
      const record = records[index];
      outcomes.push({ kind: 'gone' });
      if (record === undefined) {
        dead.push(entry.key); // cancelled or completed
        continue;
      }
      const value = fromBytes<TimerRecord>(record.data);
      if (value.placement !== entry.placement) {
        // Written against the revision still current: a claimer is about to compare-and-set.
        if (baseOf(entry.placement) >= record.revision) outcomes[index] = { kind: 'busy' };
        else dead.push(entry.key);
        continue;
      }
      if (value.visibleAt > now) {
        outcomes[index] = { kind: 'busy' }; // a fractional due time inside this ms
        continue;
      }
      const leased: TimerRecord = {
        timer: value.timer,
        visibleAt: now + leaseMs,
        placement: placement(record.revision),
      };
      claims.push({ index, revision: record.revision, leased, old: entry.key });
    }
    await this.placeEntries(claims.map((c) => c.leased));
    const won = await mapLimit(claims, CONCURRENCY, (c) =>
      this.kv.update(BucketKind.Timers, this.keys.timer(c.leased.timer.id), toBytes(c.leased), c.revision),
    );
    for (const [i, c] of claims.entries()) {
      // The old entry is dead either way: we moved the record, or whoever changed it first gave
      // it a new placement (or removed it). Our new entry is dead if we lost.
      dead.push(c.old);
      if (won[i] === undefined) dead.push(this.dueKey(c.leased.timer.id, c.leased));
      else outcomes[c.index] = { kind: 'claimed', timer: c.leased.timer };
    }
    await mapLimit(dead, CONCURRENCY, (key) =>
      this.kv.purge(BucketKind.TimerDue, key).catch(() => undefined),
    );
    return outcomes;
  }

  private async remove(timerIds: readonly string[]): Promise<void> {
    if (!Array.isArray(timerIds) || !timerIds.every((id) => typeof id === 'string')) {
      throw new ValidationError('timer ids', ['must be an array of strings']);
    }
    await mapLimit([...new Set(timerIds)], CONCURRENCY, async (id) => {
      const key = this.keys.timer(id);
      const record = await this.kv.get(BucketKind.Timers, key);
      if (record === undefined) return;
      // Only the revision read: a timer scheduled again meanwhile is a new timer and stays.
      if (!(await this.kv.purgeUpTo(BucketKind.Timers, key, record.revision))) return;
      await this.kv.purge(BucketKind.TimerDue, this.dueKey(id, fromBytes<TimerRecord>(record.data)));
    });
  }

  /**
   * Re-reads the slot directory when it is older than `slotRefreshMs`; one refresh at a time.
   * Staleness is wall-clock time on purpose: `now` given to claimDue may be any time (tests pass
   * times years ahead), while a cache goes stale with real time.
   */
  private async refreshSlots(): Promise<void> {
    if (Date.now() - this.refreshedAt < this.options.slotRefreshMs) return;
    this.refreshing ??= (async () => {
      this.writes += 1;
      const started = this.writes;
      const listed = (await this.kv.keys(BucketKind.TimerSlots, 'b.>'))
        .map((key) => this.keys.parseTimerSlot(key))
        .filter((slot): slot is number => slot !== undefined);
      // Keep what this process added while the listing was on its way; drop the rest.
      for (const [slot, written] of this.slots) if (written < started) this.slots.delete(slot);
      for (const slot of listed) if (!this.slots.has(slot)) this.slots.set(slot, started);
      this.refreshedAt = Date.now();
    })().finally(() => {
      this.refreshing = undefined;
    });
    await this.refreshing;
  }

  private slotOf(visibleAt: number): number {
    return windowStart(keyTime(visibleAt), this.options.slotMs);
  }

  private dueKey(timerId: string, record: TimerRecord): string {
    return this.keys.timerDue(
      this.slotOf(record.visibleAt),
      keyTime(record.visibleAt),
      timerId,
      record.placement,
    );
  }
}

/** A new placement token: `<base revision>-<random>` (the base tells in-flight from dead). */
function placement(baseRevision: number): string {
  return `${baseRevision}-${randomBytes(8).toString('hex')}`;
}

function baseOf(placementToken: string): number {
  const base = Number(placementToken.slice(0, placementToken.indexOf('-')));
  return Number.isSafeInteger(base) ? base : 0;
}

/** A time as it appears in keys: whole ms, never negative (the record keeps the exact value). */
function keyTime(time: number): number {
  return Math.max(0, Math.floor(time));
}

function assertTimers(timers: readonly Timer[]): void {
  const list: unknown = timers;
  if (!Array.isArray(list)) throw new ValidationError('timers', ['must be an array']);
  const problems: string[] = [];
  for (const [i, item] of (list as readonly unknown[]).entries()) {
    if (item === null || typeof item !== 'object') {
      problems.push(`timers[${i}] must be an object`);
      continue;
    }
    const timer = item as Partial<Timer>;
    if (typeof timer.id !== 'string' || timer.id === '')
      problems.push(`timers[${i}].id must be a non-empty string`);
    if (typeof timer.txId !== 'string') problems.push(`timers[${i}].txId must be a string`);
    if (
      typeof timer.dueAt !== 'number' ||
      !Number.isFinite(timer.dueAt) ||
      timer.dueAt > Number.MAX_SAFE_INTEGER
    )
      problems.push(`timers[${i}].dueAt must be a time in ms (got ${describeValue(timer.dueAt)})`);
  }
  if (problems.length > 0) throw new ValidationError('timers', problems);
}
