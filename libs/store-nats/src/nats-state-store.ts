import {
  AlreadyExistsError,
  ErrorCode,
  MultiAgentsError,
  RunNotFoundError,
  TERMINAL_RUN_STATES,
  ValidationError,
  type Run,
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
import { encodeToken } from './key-codec';
import { KvClient, fromBytes, toBytes, type KvRecord } from './kv-client';
import { mapLimit } from './map-limit';
import { BucketKind, NatsKeys, windowStart, type RunIndexKey } from './nats-keys';
import {
  DEFAULT_NATS_STORE_OPTIONS,
  NATS_STORE_OPTION_KEYS,
  checkPositiveInteger,
  describeValue,
  resolveNatsStoreOptions,
  type NatsStoreOptions,
  type ResolvedNatsStoreOptions,
} from './nats-store-options';

/** Options of {@link NatsStateStore}. */
export interface NatsStateStoreOptions extends NatsStoreOptions {
  /** Stamps outbox entries (for `listPendingOutbox`) and dates repairs; the system clock by default. */
  readonly clock?: Clock;
  /**
   * Terminal runs that ended longer ago than this are removed by {@link NatsStateStore.purgeExpired}
   * (with their idempotency key). Unset: runs are kept forever.
   */
  readonly terminalRunTtlMs?: number;
  /**
   * Width of the time windows the run index is cut into. A page of listing reads whole windows,
   * so size it to hold a few thousand runs at the usual start rate.
   */
  readonly listWindowMs?: number;
  /**
   * Index entries and outbox markers are written before the run; one whose run is missing or
   * disagrees is removed only once it is older than this (a writer may still be between the two).
   */
  readonly repairGraceMs?: number;
  /** Reads and writes of one compare-and-set or clear before giving up on a run that keeps moving. */
  readonly maxWriteAttempts?: number;
}

/** Defaults of {@link NatsStateStoreOptions}. */
export const DEFAULT_NATS_STATE_STORE_OPTIONS = Object.freeze({
  ...DEFAULT_NATS_STORE_OPTIONS,
  // At 10 starts per second a window holds 6 000 runs: what one page of listing transfers.
  listWindowMs: 600_000,
  repairGraceMs: 60_000,
  maxWriteAttempts: 64,
});

/** The value of `r.<txId>`: the run and its outbox in one revision, so they change together. */
interface RunValue {
  readonly version: number;
  readonly run: Run;
  readonly outbox: readonly OutboxEntry[];
  /** When each outbox entry was written (this store's clock), parallel to `outbox`. */
  readonly writtenAt: readonly number[];
  /** An outbox marker may exist; cleared only by the marker repair (see listPendingOutbox). */
  readonly marked: boolean;
  /** Fixed at create: index keys are built from these, whatever later versions say. */
  readonly createdAt: number;
  readonly workflowId: string;
  readonly idempotencyKey?: string;
}

/** The value of `k.<key>`: who owns the key, and the run to write if its creator died first. */
interface IdempotencyValue {
  readonly key: string;
  readonly txId: string;
  readonly initial: RunValue;
}

/** The value of an index key: the run version whose write put it there. */
interface IndexValue {
  readonly version: number;
}

/** The value of an outbox marker: the run revision the writer read before putting it. */
interface MarkerValue {
  readonly revision: number;
}

/** Reads in flight at once for a page, a sweep or a retention pass. */
const READ_CONCURRENCY = 32;

const OPTION_KEYS = [
  ...NATS_STORE_OPTION_KEYS,
  'clock',
  'terminalRunTtlMs',
  'listWindowMs',
  'repairGraceMs',
  'maxWriteAttempts',
];

const TERMINAL_TOKENS: ReadonlySet<string> = new Set([...TERMINAL_RUN_STATES].map((s) => encodeToken(s)));

/**
 * A {@link StateStore} on NATS KV (JetStream 2.9 or later), with the semantics of the memory store.
 *
 * **Runs and compare-and-set.** `r.<txId>` holds `{ version, run, outbox }`: the outbox is
 * committed in the same KV revision as the state. A write reads the record, checks our own
 * `version` (the one callers see) and writes with `kv.update(key, value, revision)`; the KV
 * revision refuses a concurrent writer. When only the revision moved (a `clearOutbox` or a
 * marker repair changed the record, not the version), the write is retried on a fresh read.
 * `clearOutbox` is the same loop, so it never drops entries appended meanwhile. A write whose
 * answer was lost in an outage may still have been applied: the caller gets a TIMEOUT error,
 * and its next compare-and-set on the old version is refused, as for any stale writer.
 *
 * **Idempotent create.** `k.<key>` is reserved first with `kv.create` and holds the txId and the
 * whole initial record. Whoever finds the key taken and its run missing (the creator died
 * between the two writes, or is still writing) writes that initial record itself with
 * `kv.create`: one of them wins, so a dangling key never blocks and never starts a second run.
 * Retention removes the key before its run. (A create that reuses the key of a run being purged
 * at that very moment may write that run's initial record back; nothing else can.)
 *
 * **Listing.** KV has no range queries, so an index key per run and state,
 * `s.<state>.<workflowId>.<window>.<createdAt>.<txId>` (bucket `<prefix>-run-index`), is written
 * before the run (a superset: entries whose run is missing or in another state are skipped at
 * read time and removed, guarded by revisions, once they are provably stale), and `h.<window>`
 * (bucket `<prefix>-run-windows`) lists the windows of `listWindowMs` that hold runs. A page
 * reads the window directory, then the windows from the newest down with one filtered key
 * listing each (the filter fixes state and workflow when given), sorts a window's keys by
 * `(createdAt, txId)` and reads only the runs the page returns, plus one to know a next page
 * exists. Costs, measured on nats-server 2.9: a filtered key listing makes the server match the
 * filter against every key of the index bucket (~160 ms at 1M keys even when nothing matches,
 * ~30 ms at 100k) and sends the matches (all keys of the window that pass the filter). So at 1M
 * runs a page costs ~2 listings (directory + newest window, ~200 ms) plus the keys of one
 * window (size `listWindowMs` to hold a few thousand runs at your start rate) plus `limit + 1`
 * reads; a sparse filter costs one ~160 ms listing per window it walks.
 *
 * **Outbox recovery.** `o.<txId>` (bucket `<prefix>-outbox`) is put before the write that gives a
 * run outbox entries, once per run until cleared (the record's `marked` flag remembers it);
 * `listPendingOutbox` reads every marker, returns the runs with entries older than the bound and
 * removes the markers of runs whose outbox is empty (flag first, guarded by revisions, so a
 * concurrent writer always leaves a marker behind). Cost: one key listing plus one read per
 * marked run, i.e. the runs written since the previous sweep plus those still pending, never
 * every run.
 *
 * **Retention.** NATS 2.9 has no per-key TTL, and a bucket `max_age` would also expire live runs
 * that are waiting longer than the TTL (and idempotency keys with them). So terminal runs are
 * removed by {@link purgeExpired}, which the application calls periodically (e.g. once a minute)
 * when `terminalRunTtlMs` is set.
 *
 * @example
 * const store = new NatsStateStore({ servers: 'nats://127.0.0.1:4222', prefix: 'prod' });
 * await store.start();
 * await store.create(run, effects, 'order-42');
 */
export class NatsStateStore implements StateStore {
  private readonly options: ResolvedNatsStoreOptions &
    Required<Pick<NatsStateStoreOptions, 'listWindowMs' | 'repairGraceMs' | 'maxWriteAttempts'>> & {
      readonly terminalRunTtlMs: number | undefined;
    };
  private readonly clock: Clock;
  private readonly keys: NatsKeys;
  private readonly kv: KvClient;
  /** Windows whose directory entry this process wrote (recent ones only; see ensureWindow). */
  private readonly knownWindows = new Set<number>();

  constructor(options: NatsStateStoreOptions) {
    const problems: string[] = [];
    const base = resolveNatsStoreOptions(options, OPTION_KEYS, problems);
    const given: NatsStateStoreOptions = typeof options === 'object' && options !== null ? options : {};
    const listWindowMs = given.listWindowMs ?? DEFAULT_NATS_STATE_STORE_OPTIONS.listWindowMs;
    checkPositiveInteger(listWindowMs, 'listWindowMs', problems);
    const repairGraceMs = given.repairGraceMs ?? DEFAULT_NATS_STATE_STORE_OPTIONS.repairGraceMs;
    checkPositiveInteger(repairGraceMs, 'repairGraceMs', problems);
    const maxWriteAttempts = given.maxWriteAttempts ?? DEFAULT_NATS_STATE_STORE_OPTIONS.maxWriteAttempts;
    checkPositiveInteger(maxWriteAttempts, 'maxWriteAttempts', problems);
    if (given.terminalRunTtlMs !== undefined)
      checkPositiveInteger(given.terminalRunTtlMs, 'terminalRunTtlMs', problems);
    const clock = given.clock ?? systemClock;
    if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function')
      problems.push(`clock must have a now() method (got ${describeValue(clock)})`);
    if (problems.length > 0) throw new ValidationError('NatsStateStore options', problems);

    this.options = {
      ...base,
      listWindowMs,
      repairGraceMs,
      maxWriteAttempts,
      terminalRunTtlMs: given.terminalRunTtlMs,
    };
    this.clock = clock;
    this.keys = new NatsKeys(base.prefix);
    this.kv = new KvClient(base, this.keys, 'NatsStateStore', [
      BucketKind.Runs,
      BucketKind.RunIndex,
      BucketKind.RunWindows,
      BucketKind.Outbox,
    ]);
  }

  /**
   * Connects and creates the buckets. Calling it is optional (the first operation does it), but
   * doing it at start surfaces a wrong address or a server without JetStream at once.
   */
  start(): Promise<void> {
    return this.kv.start();
  }

  async create(run: Run, outbox: readonly Effect[], idempotencyKey?: string): Promise<CreateRunResult> {
    assertRun(run);
    if (idempotencyKey !== undefined && typeof idempotencyKey !== 'string') {
      throw new ValidationError('create', [
        `idempotencyKey must be a string (got ${describeValue(idempotencyKey)})`,
      ]);
    }
    const now = outbox.length > 0 ? this.clock.now() : 0;
    const value: RunValue = {
      version: 1,
      run,
      outbox: outbox.map((effect) => ({ version: 1, effect })),
      writtenAt: outbox.map(() => now),
      marked: outbox.length > 0,
      createdAt: run.createdAt,
      workflowId: run.workflowId,
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
    };
    if (idempotencyKey === undefined) {
      if (!(await this.materialize(value))) throw alreadyExists(run.txId);
      return { created: true, txId: run.txId };
    }

    const key = this.keys.idempotency(idempotencyKey);
    const entry: IdempotencyValue = { key: idempotencyKey, txId: run.txId, initial: value };
    for (let attempt = 0; attempt < this.options.maxWriteAttempts; attempt += 1) {
      const revision = await this.kv.create(BucketKind.Runs, key, toBytes(entry));
      if (revision !== undefined) {
        // Not written by us: either a concurrent create with this key finished our job (the run
        // carries our key), or the txId belongs to another run, which the key must not point at.
        if (!(await this.materialize(value)) && !(await this.isOwnedBy(run.txId, idempotencyKey))) {
          await this.kv.purgeUpTo(BucketKind.Runs, key, revision);
          throw alreadyExists(run.txId);
        }
        return { created: true, txId: run.txId };
      }
      const existing = await this.kv.get(BucketKind.Runs, key);
      if (existing === undefined) continue; // removed in between (retention): reserve it again
      const owner = fromBytes<IdempotencyValue>(existing.data);
      if (owner.key !== idempotencyKey) {
        throw new MultiAgentsError(ErrorCode.Internal, 'two idempotency keys have the same SHA-256', {
          retryable: false,
        });
      }
      // Its creator may have died between reserving the key and writing the run: finish its job
      // (kv.create: if the creator is merely slow, exactly one of us writes the run).
      if ((await this.kv.get(BucketKind.Runs, this.keys.run(owner.txId))) === undefined) {
        await this.materialize(owner.initial);
      }
      return { created: false, txId: owner.txId };
    }
    throw this.tooBusy('create', run.txId);
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    const record = await this.kv.get(BucketKind.Runs, this.keys.run(txId));
    if (record === undefined) return undefined;
    const value = fromBytes<RunValue>(record.data);
    return { run: value.run, version: value.version, outbox: value.outbox };
  }

  async compareAndSet(
    txId: string,
    expectedVersion: number,
    run: Run,
    outbox: readonly Effect[],
  ): Promise<number | undefined> {
    const key = this.keys.run(txId);
    for (let attempt = 0; attempt < this.options.maxWriteAttempts; attempt += 1) {
      const record = await this.kv.get(BucketKind.Runs, key);
      if (record === undefined) throw new RunNotFoundError(txId);
      const current = fromBytes<RunValue>(record.data);
      if (current.version !== expectedVersion) return undefined;
      if (run === null || typeof run !== 'object' || run.txId !== txId) {
        throw new ValidationError('compareAndSet', [`run.txId ${String(run?.txId)} does not match ${txId}`]);
      }
      const version = expectedVersion + 1;
      const stateChanged = run.state !== current.run.state;
      const before: Promise<unknown>[] = [];
      // Both go in before the record, so a crash in between leaves a superset, never a hole.
      if (outbox.length > 0 && !current.marked) {
        const marker: MarkerValue = { revision: record.revision };
        before.push(this.kv.put(BucketKind.Outbox, this.keys.outbox(txId), toBytes(marker)));
      }
      if (stateChanged) {
        const index: IndexValue = { version };
        before.push(this.kv.put(BucketKind.RunIndex, this.indexKey(current, run.state), toBytes(index)));
      }
      await Promise.all(before);

      const now = outbox.length > 0 ? this.clock.now() : 0;
      const next: RunValue = {
        ...current,
        version,
        run,
        outbox:
          outbox.length > 0
            ? [...current.outbox, ...outbox.map((effect) => ({ version, effect }))]
            : current.outbox,
        writtenAt: outbox.length > 0 ? [...current.writtenAt, ...outbox.map(() => now)] : current.writtenAt,
        marked: current.marked || outbox.length > 0,
      };
      const written = await this.kv.update(BucketKind.Runs, key, toBytes(next), record.revision);
      if (written === undefined) continue; // the revision moved: re-read, maybe only the outbox was cleared
      if (stateChanged) {
        // Best effort: a leftover entry is skipped when listing and removed there.
        await this.dropIndexKey(this.indexKey(current, current.run.state), version).catch(() => undefined);
      }
      return version;
    }
    throw this.tooBusy('compareAndSet', txId);
  }

  async clearOutbox(txId: string, version: number): Promise<void> {
    const key = this.keys.run(txId);
    for (let attempt = 0; attempt < this.options.maxWriteAttempts; attempt += 1) {
      const record = await this.kv.get(BucketKind.Runs, key);
      if (record === undefined) return;
      const current = fromBytes<RunValue>(record.data);
      // Entries are appended in version order, so the ones to keep are a suffix.
      let keepFrom = 0;
      while (keepFrom < current.outbox.length && (current.outbox[keepFrom] as OutboxEntry).version <= version)
        keepFrom += 1;
      if (keepFrom === 0) return;
      // A compare-and-set on the revision: entries appended meanwhile make it fail and are kept.
      const next: RunValue = {
        ...current,
        outbox: current.outbox.slice(keepFrom),
        writtenAt: current.writtenAt.slice(keepFrom),
      };
      if ((await this.kv.update(BucketKind.Runs, key, toBytes(next), record.revision)) !== undefined) return;
    }
    throw this.tooBusy('clearOutbox', txId);
  }

  /**
   * Oldest first (by each run's oldest entry); a run's entries are all returned, newer ones too.
   * Reads every outbox marker (see the class comment) and removes those of emptied outboxes.
   */
  async listPendingOutbox(olderThan: number, limit: number): Promise<PendingOutbox[]> {
    assertLimit(limit);
    const tokens = (await this.kv.keys(BucketKind.Outbox, 'o.>'))
      .map((key) => this.keys.parseOutbox(key))
      .filter((token): token is string => token !== undefined);
    const found = await mapLimit(tokens, READ_CONCURRENCY, async (txToken) => {
      const record = await this.kv.get(BucketKind.Runs, this.keys.runByToken(txToken));
      if (record === undefined) {
        await this.repairMarker(txToken, undefined, undefined);
        return undefined;
      }
      const value = fromBytes<RunValue>(record.data);
      const since = value.writtenAt[0];
      if (since === undefined) {
        await this.repairMarker(txToken, record, value);
        return undefined;
      }
      return since < olderThan
        ? { since, pending: { txId: value.run.txId, entries: value.outbox } }
        : undefined;
    });
    return found
      .filter((f) => f !== undefined)
      .sort((a, b) => a.since - b.since)
      .slice(0, limit)
      .map((f) => f.pending);
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    assertLimit(limit);
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const stateToken = filter.state === undefined ? undefined : encodeToken(filter.state);
    const workflowToken = filter.workflowId === undefined ? undefined : encodeToken(filter.workflowId);
    const upper = Math.min(filter.createdBefore ?? Infinity, after?.createdAt ?? Infinity);
    const lower = filter.createdAfter ?? -Infinity;
    const width = this.options.listWindowMs;

    const windows = (await this.kv.keys(BucketKind.RunWindows, 'h.>'))
      .map((key) => this.keys.parseRunWindow(key))
      .filter((w): w is number => w !== undefined && w <= upper && w + width > lower)
      .sort((a, b) => b - a);

    const runs: Run[] = [];
    let last: { createdAt: number; txToken: string } | undefined;
    for (const window of windows) {
      const candidates = groupByRun(
        (
          await this.kv.keys(
            BucketKind.RunIndex,
            this.keys.runIndexFilter(window, filter.state, filter.workflowId),
          )
        )
          .map((key) => this.keys.parseRunIndex(key))
          .filter(
            (k): k is RunIndexKey =>
              k !== undefined &&
              k.createdAt >= lower &&
              (filter.createdBefore === undefined || k.createdAt <= filter.createdBefore) &&
              (after === undefined || compareNewestFirst(k, after) > 0),
          ),
      );
      // Read in slices just big enough to fill the page (plus one, which proves a next page).
      for (let i = 0; i < candidates.length;) {
        const slice = candidates.slice(i, i + Math.max(1, limit + 1 - runs.length));
        i += slice.length;
        const values = await mapLimit(slice, READ_CONCURRENCY, (c) => this.readIndexed(c));
        for (const [j, value] of values.entries()) {
          const candidate = slice[j] as IndexedRun;
          if (value === undefined) continue;
          if (stateToken !== undefined && encodeToken(value.run.state) !== stateToken) continue;
          if (workflowToken !== undefined && encodeToken(value.workflowId) !== workflowToken) continue;
          if (runs.length === limit) {
            return last === undefined ? { runs } : { runs, nextCursor: encodeCursor(last) };
          }
          runs.push(value.run);
          last = { createdAt: candidate.createdAt, txToken: candidate.txToken };
        }
      }
    }
    return { runs };
  }

  /**
   * Removes terminal runs that ended (`endedAt`, else `updatedAt`) at least `terminalRunTtlMs`
   * before `now`, with their idempotency key, index entries and marker, and the directory entries
   * of old windows left empty. Does nothing without `terminalRunTtlMs`. Call it periodically (the
   * application decides how often); each call removes at most `limit` runs and returns how many.
   * Runs with outbox entries still pending are kept until their effects are done.
   */
  async purgeExpired(now: number, limit = 1_000): Promise<number> {
    assertLimit(limit);
    const ttl = this.options.terminalRunTtlMs;
    if (ttl === undefined) return 0;
    const cutoff = now - ttl;
    const width = this.options.listWindowMs;
    const windows = (await this.kv.keys(BucketKind.RunWindows, 'h.>'))
      .map((key) => this.keys.parseRunWindow(key))
      .filter((w): w is number => w !== undefined && w <= cutoff)
      .sort((a, b) => a - b);
    let purged = 0;
    for (const window of windows) {
      if (purged >= limit) break;
      const directory = await this.kv.get(BucketKind.RunWindows, this.keys.runWindow(window));
      const keys = (await this.kv.keys(BucketKind.RunIndex, this.keys.runIndexFilter(window)))
        .map((key) => this.keys.parseRunIndex(key))
        .filter((k) => k !== undefined);
      const byRun = new Map<string, RunIndexKey[]>();
      for (const k of keys) byRun.set(k.txToken, [...(byRun.get(k.txToken) ?? []), k]);
      const expired = [...byRun.entries()]
        .filter(([, ks]) => ks.some((k) => TERMINAL_TOKENS.has(k.stateToken) && k.createdAt <= cutoff))
        .slice(0, limit - purged);
      const removed = await mapLimit(expired, READ_CONCURRENCY, ([txToken, indexKeys]) =>
        this.purgeRun(txToken, indexKeys, cutoff),
      );
      const count = removed.filter(Boolean).length;
      purged += count;
      // An old window left without runs leaves the directory. Only windows far older than any
      // window a writer still skips the directory write for (see ensureWindow), and guarded by
      // the revision read before the scan, so a window written to since is kept.
      if (
        directory !== undefined &&
        count === byRun.size &&
        window + 2 * width < cutoff &&
        window + 2 * width < this.clock.now() - width
      ) {
        await this.kv.purgeUpTo(BucketKind.RunWindows, this.keys.runWindow(window), directory.revision);
        this.knownWindows.delete(window);
      }
    }
    return purged;
  }

  /** Further calls are refused; closes the connection if the store opened it. */
  async close(): Promise<void> {
    await this.kv.close();
  }

  /** Deletes this prefix's buckets with all their data (tests and decommissioning). */
  async destroy(): Promise<void> {
    await this.kv.destroy();
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * Writes a run's directory entry, index entry and marker, then the run itself with kv.create.
   * False when a run with this txId exists already.
   */
  private async materialize(value: RunValue): Promise<boolean> {
    const txId = value.run.txId;
    await this.ensureWindow(value.createdAt);
    const writes: Promise<unknown>[] = [
      this.kv.put(BucketKind.RunIndex, this.indexKey(value, value.run.state), toBytes({ version: 1 })),
    ];
    if (value.marked) {
      const marker: MarkerValue = { revision: 0 };
      writes.push(this.kv.put(BucketKind.Outbox, this.keys.outbox(txId), toBytes(marker)));
    }
    await Promise.all(writes);
    return (await this.kv.create(BucketKind.Runs, this.keys.run(txId), toBytes(value))) !== undefined;
  }

  /** True when the stored run `txId` was created with this idempotency key. */
  private async isOwnedBy(txId: string, idempotencyKey: string): Promise<boolean> {
    const record = await this.kv.get(BucketKind.Runs, this.keys.run(txId));
    return record !== undefined && fromBytes<RunValue>(record.data).idempotencyKey === idempotencyKey;
  }

  /**
   * Makes sure the window holding `createdAt` is in the directory. The write is skipped only for
   * a window this process wrote and that is recent; retention removes only windows much older,
   * so a skipped write can never race a removal.
   */
  private async ensureWindow(createdAt: number): Promise<void> {
    const width = this.options.listWindowMs;
    const window = windowStart(createdAt, width);
    const recent = window >= this.clock.now() - width;
    if (recent && this.knownWindows.has(window)) return;
    await this.kv.put(BucketKind.RunWindows, this.keys.runWindow(window), toBytes({}));
    if (recent) this.knownWindows.add(window);
  }

  private indexKey(value: Pick<RunValue, 'workflowId' | 'createdAt' | 'run'>, state: string): string {
    return this.keys.runIndex(
      state,
      value.workflowId,
      value.createdAt,
      value.run.txId,
      this.options.listWindowMs,
    );
  }

  /**
   * Removes an index entry unless a write newer than `upToVersion` put it there again: the
   * entry's revision is read first and only that revision is purged.
   */
  private async dropIndexKey(key: string, upToVersion: number): Promise<void> {
    const record = await this.kv.get(BucketKind.RunIndex, key);
    if (record === undefined) return;
    if (fromBytes<IndexValue>(record.data).version <= upToVersion) {
      await this.kv.purgeUpTo(BucketKind.RunIndex, key, record.revision);
    }
  }

  /** The run an index candidate points at if an entry of it describes the run; repairs the others. */
  private async readIndexed(candidate: IndexedRun): Promise<RunValue | undefined> {
    const record = await this.kv.get(BucketKind.Runs, this.keys.runByToken(candidate.txToken));
    const value = record === undefined ? undefined : fromBytes<RunValue>(record.data);
    let valid = false;
    for (const key of candidate.keys) {
      const describes =
        value !== undefined &&
        key.stateToken === encodeToken(value.run.state) &&
        key.workflowToken === encodeToken(value.workflowId) &&
        key.createdAt === value.createdAt;
      if (describes) valid = true;
      else await this.repairIndexKey(key.key, value).catch(() => undefined);
    }
    return valid ? value : undefined;
  }

  /**
   * Removes an index entry that does not describe its run: when the run is missing and the entry
   * is past the grace (its writer may still be about to create the run), or when the run's
   * version has reached the one the entry was written for (that write happened or lost).
   */
  private async repairIndexKey(key: string, value: RunValue | undefined): Promise<void> {
    const record = await this.kv.get(BucketKind.RunIndex, key);
    if (record === undefined) return;
    const stale =
      value === undefined
        ? this.clock.now() - record.createdAt > this.options.repairGraceMs
        : value.version >= fromBytes<IndexValue>(record.data).version;
    if (stale) await this.kv.purgeUpTo(BucketKind.RunIndex, key, record.revision);
  }

  /**
   * Removes the marker of a run whose outbox is empty, without ever losing the marker a
   * concurrent writer relies on. With `marked` set, the flag is cleared first by a
   * compare-and-set on the run, then the marker revision read before it is purged: a writer that
   * adds entries afterwards sees the flag clear and puts a new marker (a newer revision, which
   * the purge leaves alone). Without the flag, the marker belongs to a writer between its marker
   * and its record write; it goes once the run's revision has moved past the one that writer
   * read (its write failed, or it died and someone else wrote the run since). A marker whose run
   * does not exist goes after `repairGraceMs` (its creator died before writing the run).
   */
  private async repairMarker(
    txToken: string,
    record: KvRecord | undefined,
    value: RunValue | undefined,
  ): Promise<void> {
    const markerKey = `o.${txToken}`;
    const marker = await this.kv.get(BucketKind.Outbox, markerKey);
    if (marker === undefined) return;
    const old = this.clock.now() - marker.createdAt > this.options.repairGraceMs;
    if (record === undefined || value === undefined) {
      if (old) await this.kv.purgeUpTo(BucketKind.Outbox, markerKey, marker.revision);
      return;
    }
    if (value.marked) {
      const cleared: RunValue = { ...value, marked: false };
      const written = await this.kv.update(
        BucketKind.Runs,
        this.keys.runByToken(txToken),
        toBytes(cleared),
        record.revision,
      );
      if (written !== undefined) await this.kv.purgeUpTo(BucketKind.Outbox, markerKey, marker.revision);
      return;
    }
    // No age limit here: a writer paused between its marker and its record write must still find
    // its marker. One that died leaves it until the run is written again (it will be: it is live).
    if (record.revision > fromBytes<MarkerValue>(marker.data).revision) {
      await this.kv.purgeUpTo(BucketKind.Outbox, markerKey, marker.revision);
    }
  }

  /** Removes one expired run and everything pointing at it; false when it is not (yet) expired. */
  private async purgeRun(
    txToken: string,
    indexKeys: readonly RunIndexKey[],
    cutoff: number,
  ): Promise<boolean> {
    const runKey = this.keys.runByToken(txToken);
    const record = await this.kv.get(BucketKind.Runs, runKey);
    if (record === undefined) {
      for (const k of indexKeys) await this.repairIndexKey(k.key, undefined);
      return false;
    }
    const value = fromBytes<RunValue>(record.data);
    const run = value.run;
    if (!TERMINAL_RUN_STATES.has(run.state) || value.outbox.length > 0) return false;
    if ((run.endedAt ?? run.updatedAt) > cutoff) return false;
    // The key goes first: a key must never point at a run that is gone (see create).
    if (value.idempotencyKey !== undefined) {
      const key = this.keys.idempotency(value.idempotencyKey);
      const entry = await this.kv.get(BucketKind.Runs, key);
      if (entry !== undefined && fromBytes<IdempotencyValue>(entry.data).txId === run.txId) {
        await this.kv.purgeUpTo(BucketKind.Runs, key, entry.revision);
      }
    }
    // Only the revision read: a run written since (it cannot be, being terminal) would stay.
    if (!(await this.kv.purgeUpTo(BucketKind.Runs, runKey, record.revision))) return false;
    await Promise.all([
      ...indexKeys.map((k) => this.kv.purge(BucketKind.RunIndex, k.key)),
      this.kv.purge(BucketKind.Outbox, `o.${txToken}`),
    ]);
    return true;
  }

  private tooBusy(op: string, txId: string): MultiAgentsError {
    return new MultiAgentsError(
      ErrorCode.Conflict,
      `${op} of run ${txId}: the record kept changing for ${this.options.maxWriteAttempts} attempts`,
      { retryable: true, details: { txId } },
    );
  }
}

/** Index entries of one run found in a window (normally one; two while it changes state). */
interface IndexedRun {
  readonly createdAt: number;
  readonly txToken: string;
  readonly keys: readonly RunIndexKey[];
}

/** Groups index entries by run, newest first by `(createdAt, txId)`. */
function groupByRun(keys: readonly RunIndexKey[]): IndexedRun[] {
  const byRun = new Map<string, RunIndexKey[]>();
  for (const k of keys) {
    const list = byRun.get(k.txToken);
    if (list === undefined) byRun.set(k.txToken, [k]);
    else list.push(k);
  }
  return [...byRun.entries()]
    .map(([txToken, list]) => ({ createdAt: (list[0] as RunIndexKey).createdAt, txToken, keys: list }))
    .sort(compareNewestFirst);
}

/** Positive when `a` sorts after `b` newest first (it is older, or equally old with a smaller txId). */
function compareNewestFirst(
  a: { createdAt: number; txToken: string },
  b: { createdAt: number; txToken: string },
): number {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.txToken < b.txToken ? 1 : a.txToken > b.txToken ? -1 : 0;
}

function alreadyExists(txId: string): AlreadyExistsError {
  return new AlreadyExistsError(`run ${txId} already exists`, { txId });
}

function assertRun(run: Run): void {
  const problems: string[] = [];
  if (run === null || typeof run !== 'object') throw new ValidationError('run', ['must be an object']);
  if (typeof run.txId !== 'string' || run.txId === '') problems.push('txId must be a non-empty string');
  if (typeof run.workflowId !== 'string') problems.push('workflowId must be a string');
  if (typeof run.state !== 'string') problems.push('state must be a string');
  if (!Number.isSafeInteger(run.createdAt) || run.createdAt < 0)
    problems.push(`createdAt must be a non-negative integer (got ${describeValue(run.createdAt)})`);
  if (problems.length > 0) throw new ValidationError('run', problems);
}

function assertLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new ValidationError('limit', ['must be an integer >= 1']);
}

function encodeCursor(key: { createdAt: number; txToken: string }): string {
  return Buffer.from(JSON.stringify([key.createdAt, key.txToken]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: number; txToken: string } {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'number' &&
      typeof parsed[1] === 'string'
    ) {
      return { createdAt: parsed[0], txToken: parsed[1] };
    }
  } catch {
    // Reported below with the same error as a well-formed JSON of the wrong shape.
  }
  throw new ValidationError('cursor', ['not a cursor returned by list()']);
}
