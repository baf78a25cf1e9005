import {
  AlreadyExistsError,
  RunNotFoundError,
  ValidationError,
  type Run,
  type RunState,
} from '@multiagents/contracts';
import {
  systemClock,
  type Clock,
  type CreateRunResult,
  type Effect,
  type OutboxEntry,
  type PendingOutbox,
  type RunFilter,
  type RunPage,
  type StateStore,
  type StoredRun,
} from '@multiagents/core';
import { SortedRunIndex, compareRunKeys, type RunKey } from './sorted-run-index';

/** Options of {@link MemoryStateStore}. */
export interface MemoryStateStoreOptions {
  /** Stamps outbox entries, for `listPendingOutbox` (default: the system clock). */
  readonly clock?: Clock;
}

/**
 * One run as held. Records are replaced on every write and never changed afterwards, so the
 * `StoredRun` inside can be handed to callers as is: nothing the store does later shows through.
 */
interface RunRecord {
  readonly stored: StoredRun;
  /** Fixed at create: a run's createdAt never changes, and the indexes are keyed on it. */
  readonly key: RunKey;
  /** The state the run is indexed under (not re-read from `stored.run`, see the class comment). */
  readonly state: RunState;
  /** When each outbox entry was written, parallel to `stored.outbox`. */
  readonly writtenAt: readonly number[];
}

const EMPTY_OUTBOX: readonly OutboxEntry[] = Object.freeze([]);
const EMPTY_TIMES: readonly number[] = Object.freeze([]);

/**
 * An in-process {@link StateStore}: compare-and-set on a version, an outbox written with each
 * version, idempotent create, and newest-first listing with an opaque cursor. Each state has its
 * own sorted index, so listing by state reads only runs in that state.
 *
 * Ownership: the store keeps the `Run` and `Effect` objects it is given, without copying. The
 * engine treats runs as immutable values (every transition builds a new object), which is what
 * makes that safe and cheap; a caller that mutates a run after handing it over breaks the
 * contract. In the other direction the store never mutates what it handed out: every write
 * builds a new `StoredRun` (frozen, with a frozen outbox), so a result of `get` is a snapshot.
 *
 * @example
 * const store = new MemoryStateStore();
 * await store.create(run, effects);
 * const stored = await store.get(run.txId);
 * await store.compareAndSet(run.txId, stored!.version, nextRun, nextEffects);
 */
export class MemoryStateStore implements StateStore {
  private readonly clock: Clock;
  private readonly runs = new Map<string, RunRecord>();
  private readonly idempotencyKeys = new Map<string, string>();
  private readonly all = new SortedRunIndex();
  private readonly byState = new Map<RunState, SortedRunIndex>();
  /** Runs whose outbox is not empty: what outbox recovery scans, instead of every run. */
  private readonly withOutbox = new Set<string>();
  private closed = false;

  constructor(options: MemoryStateStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
  }

  async create(run: Run, outbox: readonly Effect[], idempotencyKey?: string): Promise<CreateRunResult> {
    this.assertOpen();
    if (idempotencyKey !== undefined) {
      const existing = this.idempotencyKeys.get(idempotencyKey);
      if (existing !== undefined) return { created: false, txId: existing };
    }
    if (this.runs.has(run.txId)) {
      throw new AlreadyExistsError(`run ${run.txId} already exists`, { txId: run.txId });
    }
    const now = outbox.length > 0 ? this.clock.now() : 0;
    const record: RunRecord = {
      stored: freezeStored(
        run,
        1,
        outbox.length > 0 ? outbox.map((effect) => Object.freeze({ version: 1, effect })) : EMPTY_OUTBOX,
      ),
      key: { createdAt: run.createdAt, txId: run.txId },
      state: run.state,
      writtenAt: outbox.length > 0 ? outbox.map(() => now) : EMPTY_TIMES,
    };
    this.runs.set(run.txId, record);
    this.all.insert(record.key);
    this.stateIndex(record.state).insert(record.key);
    if (outbox.length > 0) this.withOutbox.add(run.txId);
    if (idempotencyKey !== undefined) this.idempotencyKeys.set(idempotencyKey, run.txId);
    return { created: true, txId: run.txId };
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    this.assertOpen();
    return this.runs.get(txId)?.stored;
  }

  async compareAndSet(
    txId: string,
    expectedVersion: number,
    run: Run,
    outbox: readonly Effect[],
  ): Promise<number | undefined> {
    this.assertOpen();
    const record = this.runs.get(txId);
    if (record === undefined) throw new RunNotFoundError(txId);
    if (record.stored.version !== expectedVersion) return undefined;
    if (run.txId !== txId) {
      throw new ValidationError('compareAndSet', [`run.txId ${run.txId} does not match ${txId}`]);
    }

    const version = expectedVersion + 1;
    let entries = record.stored.outbox;
    let writtenAt = record.writtenAt;
    if (outbox.length > 0) {
      const now = this.clock.now();
      entries = [...entries, ...outbox.map((effect) => Object.freeze({ version, effect }))];
      writtenAt = [...writtenAt, ...outbox.map(() => now)];
      this.withOutbox.add(txId);
    }
    const next: RunRecord = {
      stored: freezeStored(run, version, entries),
      key: record.key,
      state: run.state,
      writtenAt,
    };
    if (next.state !== record.state) {
      this.stateIndex(record.state).remove(record.key);
      this.stateIndex(next.state).insert(record.key);
    }
    this.runs.set(txId, next);
    return version;
  }

  async clearOutbox(txId: string, version: number): Promise<void> {
    this.assertOpen();
    const record = this.runs.get(txId);
    if (record === undefined) return;
    const outbox = record.stored.outbox;
    // Entries are appended in version order, so the ones to keep are a suffix.
    let keepFrom = 0;
    while (keepFrom < outbox.length && (outbox[keepFrom] as OutboxEntry).version <= version) keepFrom += 1;
    if (keepFrom === 0) return;
    const entries = keepFrom === outbox.length ? EMPTY_OUTBOX : outbox.slice(keepFrom);
    const writtenAt = keepFrom === outbox.length ? EMPTY_TIMES : record.writtenAt.slice(keepFrom);
    this.runs.set(txId, {
      ...record,
      stored: freezeStored(record.stored.run, record.stored.version, entries),
      writtenAt,
    });
    if (entries.length === 0) this.withOutbox.delete(txId);
  }

  /** Oldest first (by each run's oldest entry); a run's entries are all returned, newer ones too. */
  async listPendingOutbox(olderThan: number, limit: number): Promise<PendingOutbox[]> {
    this.assertOpen();
    assertLimit(limit);
    const found: Array<{ since: number; pending: PendingOutbox }> = [];
    for (const txId of this.withOutbox) {
      const record = this.runs.get(txId);
      const since = record?.writtenAt[0];
      if (record === undefined || since === undefined || since >= olderThan) continue;
      found.push({ since, pending: { txId, entries: record.stored.outbox } });
    }
    found.sort((a, b) => a.since - b.since);
    return found.slice(0, limit).map((f) => f.pending);
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    this.assertOpen();
    assertLimit(limit);
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const index = filter.state === undefined ? this.all : this.byState.get(filter.state);
    if (index === undefined) return { runs: [] };

    // Walk newest to oldest from the first key both below the cursor and inside createdBefore.
    let i = index.size - 1;
    if (after !== undefined) i = Math.min(i, index.partitionPoint((k) => compareRunKeys(k, after) < 0) - 1);
    const before = filter.createdBefore;
    if (before !== undefined) i = Math.min(i, index.partitionPoint((k) => k.createdAt <= before) - 1);

    const runs: Run[] = [];
    let last: RunKey | undefined;
    let more = false;
    for (; i >= 0; i -= 1) {
      const key = index.at(i) as RunKey;
      if (filter.createdAfter !== undefined && key.createdAt < filter.createdAfter) break;
      const record = this.runs.get(key.txId);
      if (record === undefined) continue;
      if (filter.workflowId !== undefined && record.stored.run.workflowId !== filter.workflowId) continue;
      // One match past a full page proves there is a next page (no empty last page).
      if (runs.length === limit) {
        more = true;
        break;
      }
      runs.push(record.stored.run);
      last = key;
    }
    return more && last !== undefined ? { runs, nextCursor: encodeCursor(last) } : { runs };
  }

  /** Further calls are refused; the data stays (nothing to release in memory). */
  async close(): Promise<void> {
    this.closed = true;
  }

  private stateIndex(state: RunState): SortedRunIndex {
    let index = this.byState.get(state);
    if (index === undefined) {
      index = new SortedRunIndex();
      this.byState.set(state, index);
    }
    return index;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('MemoryStateStore is closed');
  }
}

function freezeStored(run: Run, version: number, outbox: readonly OutboxEntry[]): StoredRun {
  return Object.freeze({ run, version, outbox: Object.isFrozen(outbox) ? outbox : Object.freeze(outbox) });
}

function assertLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new ValidationError('limit', ['must be an integer >= 1']);
}

function encodeCursor(key: RunKey): string {
  return Buffer.from(JSON.stringify([key.createdAt, key.txId]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): RunKey {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'number' &&
      typeof parsed[1] === 'string'
    ) {
      return { createdAt: parsed[0], txId: parsed[1] };
    }
  } catch {
    // Reported below with the same error as a well-formed JSON of the wrong shape.
  }
  throw new ValidationError('cursor', ['not a cursor returned by list()']);
}
