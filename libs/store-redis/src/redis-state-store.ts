import {
  AlreadyExistsError,
  ErrorCode,
  MultiAgentsError,
  RunNotFoundError,
  ValidationError,
  isTerminalRunState,
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
import { redisCodec, type RunIndexKey } from './redis-codec';
import { RedisConnection } from './redis-connection';
import { isPositive, resolveRedisStoreOptions, type RedisStoreOptions } from './redis-store-options';

/** Default retention of a run after it reaches a terminal state: 7 days. */
export const DEFAULT_TERMINAL_RUN_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Default time a create waits for the run of a concurrent creator of the same idempotency key. */
export const DEFAULT_IDEMPOTENCY_WAIT_MS = 5_000;
/** Default age after which a marker or index entry whose write never landed counts as abandoned. */
export const DEFAULT_IN_FLIGHT_GRACE_MS = 60_000;
/** How long a txId fenced off from a presumed-crashed idempotent creator stays fenced. */
const VOID_TTL_MS = 24 * 60 * 60 * 1000;
/** Rounds of an idempotent create contested by other creators before giving up with CONFLICT. */
const IDEMPOTENT_CREATE_ROUNDS = 4;
/** Index entries read per round trip by list() (at least the page size plus one). */
const LIST_BATCH_MIN = 16;
const LIST_BATCH_MAX = 500;
/** Rounds one list() or listPendingOutbox() call may read before returning what it has. */
const SCAN_ROUNDS_MAX = 50;

/** Options of {@link RedisStateStore}. */
export interface RedisStateStoreOptions extends RedisStoreOptions {
  /**
   * How long a run is kept after a write leaves it terminal, in ms; 0 keeps runs forever
   * (default {@link DEFAULT_TERMINAL_RUN_TTL_MS}). Set as a Redis TTL on the run's keys (and on its
   * idempotency key); listing indexes forget an expired run when list() next walks over it.
   */
  readonly terminalRunTtlMs?: number;
  /**
   * How long a create waits for the run of another creator that holds the same idempotency key
   * before presuming it crashed and taking the key over (default {@link DEFAULT_IDEMPOTENCY_WAIT_MS}).
   */
  readonly idempotencyWaitMs?: number;
  /**
   * Age after which a pending-outbox marker or an index entry whose write never landed is
   * presumed abandoned and removed (default {@link DEFAULT_IN_FLIGHT_GRACE_MS}).
   */
  readonly inFlightGraceMs?: number;
  /** Stamps pending-outbox markers, for `listPendingOutbox` (default: the system clock). */
  readonly clock?: Clock;
}

interface RunRead {
  readonly txId: string;
  readonly version: number;
  readonly run: Run;
}

/**
 * A {@link StateStore} on Redis, with the semantics of the memory store: compare-and-set on a
 * version in a Lua script that writes the run and appends its outbox in the same atomic step,
 * idempotent create, and newest-first listing by state, workflow and time with an opaque cursor.
 *
 * Cluster layout and crash safety (key names: `RedisKeys`). A run's record and outbox share the
 * hash tag `{<txId>}`; the listing indexes (`{runs}`) and the pending-outbox marker (`{outbox}`)
 * are global and cannot be written in the same script, so:
 *
 * - The pending-outbox marker is set BEFORE the write that appends entries (sent first on the
 *   same connection in the same round trip, so Redis runs it first). A marker without entries is
 *   harmless: it goes when the entries it marked are cleared, or when the sweep
 *   (`listPendingOutbox`) finds nothing pending; a version guard (`marks`: the highest version
 *   marked) keeps a write in flight from losing its marker to a concurrent clear, and a mark
 *   whose write never landed is dropped after `inFlightGraceMs`. The marker keeps the time of the
 *   oldest mark not yet cleared, so entries written while an older one was pending may be swept
 *   a little early (effects are safe to repeat).
 * - A run enters the index of its new state BEFORE the write (a superset); it leaves the index of
 *   the state it left after the write, through a version-guarded script, so a paused writer that
 *   wakes up cannot undo a newer move. list() checks every entry against the run's record: an
 *   entry in the wrong index is skipped and repaired, an entry whose run is gone (expired, or a
 *   create that never landed, after `inFlightGraceMs`) is dropped. One narrow window remains: a
 *   list() repairing an entry while a writer moves the run into that very state and crashes
 *   before its index move leaves the run out of its new state's index until a list() of its old
 *   state repairs it.
 *
 * Retention: a write that leaves a run terminal gives its keys (and its idempotency key) a TTL of
 * `terminalRunTtlMs`. Index entries (and the `meta` field) of an expired run stay until a list()
 * walks over them, so an index nobody lists keeps one small entry per expired run.
 *
 * Order: newest first by createdAt, ties by txId compared as UTF-8 bytes (the zset's own order;
 * the memory store compares UTF-16 code units, which agrees for ASCII ids).
 *
 * Each call is one round trip, except: an idempotent create (two, more when contested), list()
 * (two per batch of index entries, plus one for repairs) and listPendingOutbox() (two per batch).
 *
 * @example
 * const store = new RedisStateStore({ url: 'redis://127.0.0.1:6379', prefix: 'multiagents' });
 * await store.create(run, effects, 'order-42');
 * const stored = await store.get(run.txId);
 * await store.compareAndSet(run.txId, stored!.version, nextRun, nextEffects);
 * await store.close();
 */
export class RedisStateStore implements StateStore {
  private readonly connection: RedisConnection;
  private readonly clock: Clock;
  private readonly terminalRunTtlMs: number;
  private readonly idempotencyWaitMs: number;
  private readonly inFlightGraceMs: number;

  constructor(options: RedisStateStoreOptions = {}) {
    const problems: string[] = [];
    const ttl = options.terminalRunTtlMs ?? DEFAULT_TERMINAL_RUN_TTL_MS;
    if (!Number.isInteger(ttl) || ttl < 0) problems.push('terminalRunTtlMs must be an integer >= 0');
    const wait = options.idempotencyWaitMs ?? DEFAULT_IDEMPOTENCY_WAIT_MS;
    if (!isPositive(wait)) problems.push('idempotencyWaitMs must be a number > 0');
    const grace = options.inFlightGraceMs ?? DEFAULT_IN_FLIGHT_GRACE_MS;
    if (!isPositive(grace)) problems.push('inFlightGraceMs must be a number > 0');
    const resolved = resolveRedisStoreOptions('RedisStateStore', options, problems);
    this.terminalRunTtlMs = ttl;
    this.idempotencyWaitMs = wait;
    this.inFlightGraceMs = grace;
    this.clock = options.clock ?? systemClock;
    this.connection = new RedisConnection(resolved, 'RedisStateStore');
  }

  async create(run: Run, outbox: readonly Effect[], idempotencyKey?: string): Promise<CreateRunResult> {
    this.connection.keys.run(run.txId); // validates the txId before anything is written
    if (idempotencyKey === undefined) {
      return this.connection.call('create', async () => {
        if ((await this.createRecord(run, outbox, '')) !== 1) throw alreadyExists(run.txId);
        return { created: true, txId: run.txId };
      });
    }
    return this.connection.call(
      'create',
      () => this.createIdempotent(run, outbox, idempotencyKey),
      IDEMPOTENT_CREATE_ROUNDS * this.idempotencyWaitMs,
    );
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    const keys = this.connection.keys;
    const run = keys.run(txId);
    return this.connection.call('get', async () => {
      const reply = (await this.connection.scripts.getRun([run, keys.outbox(txId)], [])) as string[] | null;
      return reply === null ? undefined : snapshot(reply);
    });
  }

  async compareAndSet(
    txId: string,
    expectedVersion: number,
    run: Run,
    outbox: readonly Effect[],
  ): Promise<number | undefined> {
    const { keys, scripts } = this.connection;
    const runKey = keys.run(txId);
    if (run.txId !== txId) {
      throw new ValidationError('compareAndSet', [`run.txId ${run.txId} does not match ${txId}`]);
    }
    if (!Number.isInteger(expectedVersion) || expectedVersion < 1) return this.ensureExists(txId);

    return this.connection.call('compareAndSet', async () => {
      const version = expectedVersion + 1;
      const terminal = isTerminalRunState(run.state);
      // Sent before the CAS script on this connection, so Redis applies them first (see class doc).
      const before: Promise<unknown>[] = [
        this.connection.client.zadd(keys.runsByState(run.state), 'NX', run.createdAt, txId),
      ];
      if (outbox.length > 0) before.push(this.mark(txId, version));
      const cas = scripts.casRun(
        [runKey, keys.outbox(txId)],
        [
          expectedVersion,
          redisCodec.encodeRun(run),
          run.state,
          terminal ? this.terminalRunTtlMs : 0,
          ...outbox.map((effect) => redisCodec.encodeOutboxItem(version, effect)),
        ],
      );
      const [reply] = (await Promise.all([cas, ...before])) as [[number, string?, string?]];
      const [written, previousState, idempotencyKey] = reply;
      if (written === -1) throw new RunNotFoundError(txId);
      if (written === 0) return undefined;
      if (previousState !== run.state) this.reindex(run, written, '');
      if (terminal && idempotencyKey) this.expireIdempotencyKey(idempotencyKey);
      // An operator reopened a finished run (RetryStep…): its key lives as long as the run again.
      if (!terminal && idempotencyKey && isTerminalRunState(previousState as RunState)) {
        this.connection.detach(
          'keeping an idempotency key',
          this.connection.client.persist(this.connection.keys.idempotency(idempotencyKey)),
        );
      }
      return written;
    });
  }

  async clearOutbox(txId: string, version: number): Promise<void> {
    const { keys, scripts } = this.connection;
    const outbox = keys.outbox(txId);
    await this.connection.call('clearOutbox', async () => {
      // In parallel: the unmark only succeeds when no version above `version` was marked, and any
      // entry left after this clear was written above it (see unmark-outbox.lua).
      await Promise.all([
        scripts.clearOutbox([outbox], [version]),
        scripts.unmarkOutbox([keys.outboxPending(), keys.outboxMarks()], [txId, version, '']),
      ]);
    });
  }

  /** Oldest first (by each run's first pending write); a run's entries are all returned, newer ones too. */
  async listPendingOutbox(olderThan: number, limit: number): Promise<PendingOutbox[]> {
    assertLimit(limit);
    const { keys, scripts, client } = this.connection;
    return this.connection.call('listPendingOutbox', async () => {
      const before = Number.isFinite(olderThan) ? `(${olderThan}` : olderThan > 0 ? '+inf' : '-inf';
      const batch = clamp(limit, LIST_BATCH_MIN, LIST_BATCH_MAX);
      const found: PendingOutbox[] = [];
      const settled: Array<[string, number]> = [];
      let offset = 0;
      for (let round = 0; round < SCAN_ROUNDS_MAX && found.length < limit; round += 1) {
        const txIds = await client.zrangebyscore(
          keys.outboxPending(),
          '-inf',
          before,
          'LIMIT',
          offset,
          batch,
        );
        const replies = (await Promise.all(
          txIds.map((txId) => scripts.getRun([keys.run(txId), keys.outbox(txId)], [])),
        )) as Array<string[] | null>;
        txIds.forEach((txId, i) => {
          const stored = replies[i] ? snapshot(replies[i]) : undefined;
          if (stored !== undefined && stored.outbox.length > 0) {
            if (found.length < limit) found.push({ txId, entries: stored.outbox });
          } else {
            settled.push([txId, stored?.version ?? 0]);
          }
        });
        if (txIds.length < batch) break;
        offset += txIds.length;
      }
      // Markers of runs with nothing pending: dropped unless a write may still be on its way.
      const abandonedBefore = this.clock.now() - this.inFlightGraceMs;
      await Promise.all(
        settled.map(([txId, version]) =>
          scripts.unmarkOutbox([keys.outboxPending(), keys.outboxMarks()], [txId, version, abandonedBefore]),
        ),
      );
      return found;
    });
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    assertLimit(limit);
    const after = cursor === undefined ? undefined : redisCodec.decodeCursor(cursor);
    const { keys, scripts, client } = this.connection;
    const index =
      filter.state !== undefined
        ? keys.runsByState(filter.state)
        : filter.workflowId !== undefined
          ? keys.runsByWorkflow(filter.workflowId)
          : keys.runsAll();

    return this.connection.call('list', async () => {
      const batch = clamp(limit + 1, LIST_BATCH_MIN, LIST_BATCH_MAX);
      const runs: Run[] = [];
      const stale: RunRead[] = [];
      const missing: string[] = [];
      let last: RunIndexKey | undefined; // last run returned
      let scanned: RunIndexKey | undefined = after; // last index entry read
      let more = false;
      let exhausted = false;

      for (let round = 0; round < SCAN_ROUNDS_MAX && !more && !exhausted; round += 1) {
        const page = (await scripts.indexPage(
          [index],
          [
            filter.createdBefore ?? '+inf',
            filter.createdAfter ?? '-inf',
            scanned?.createdAt ?? '',
            scanned?.txId ?? '',
            batch,
          ],
        )) as string[];
        const entries: RunIndexKey[] = [];
        for (let i = 0; i + 1 < page.length; i += 2) {
          entries.push({ txId: page[i] as string, createdAt: Number(page[i + 1]) });
        }
        exhausted = entries.length < batch;
        const records = await Promise.all(
          entries.map((entry) => client.hmget(keys.run(entry.txId), 'v', 'run')),
        );
        for (let i = 0; i < entries.length; i += 1) {
          const entry = entries[i] as RunIndexKey;
          const [version, json] = records[i] as [string | null, string | null];
          scanned = entry;
          if (version === null || json === null) {
            missing.push(entry.txId);
            continue;
          }
          const run = redisCodec.decodeRun(json);
          if (filter.state !== undefined && run.state !== filter.state) {
            stale.push({ txId: entry.txId, version: Number(version), run });
            continue;
          }
          if (filter.workflowId !== undefined && run.workflowId !== filter.workflowId) {
            // A workflow id never changes: in its own index, a mismatch is a failed create's leftover.
            if (filter.state === undefined) stale.push({ txId: entry.txId, version: Number(version), run });
            continue;
          }
          // One match past a full page proves there is a next page (no empty last page).
          if (runs.length === limit) {
            more = true;
            break;
          }
          runs.push(run);
          last = entry;
        }
      }

      await this.repair(filter, stale, missing);
      if (more && last !== undefined) return { runs, nextCursor: redisCodec.encodeCursor(last) };
      // Out of rounds (a long stretch of stale entries): resume after what was read.
      if (!exhausted && !more && scanned !== undefined) {
        return { runs, nextCursor: redisCodec.encodeCursor(scanned) };
      }
      return { runs };
    });
  }

  /** Waits for follow-up index writes, then closes the connection (if this store opened it). */
  async close(): Promise<void> {
    await this.connection.close();
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * One round trip: index entries and the outbox marker first (supersets, see the class doc), the
   * create script, then the confirmation of the index entry. Returns the script's reply: 1
   * created, 0 txId taken by a run, -1 txId fenced off.
   */
  private async createRecord(run: Run, outbox: readonly Effect[], idempotencyKey: string): Promise<number> {
    const { keys, scripts } = this.connection;
    const txId = run.txId;
    const now = this.clock.now();
    const work: Promise<unknown>[] = [
      scripts.indexRun(
        [keys.runsAll(), keys.runsByWorkflow(run.workflowId), keys.runsByState(run.state), keys.runsMeta()],
        [txId, run.createdAt, redisCodec.encodeRunMeta(0, run.state, now, run.workflowId)],
      ),
    ];
    if (outbox.length > 0) work.push(this.mark(txId, 1));
    const created = scripts.createRun(
      [keys.run(txId), keys.outbox(txId)],
      [
        redisCodec.encodeRun(run),
        run.state,
        idempotencyKey,
        isTerminalRunState(run.state) ? this.terminalRunTtlMs : 0,
        ...outbox.map((effect) => redisCodec.encodeOutboxItem(1, effect)),
      ],
    );
    work.push(created, this.reindexCall(run, 1, ''));
    await Promise.all(work);
    return (await created) as number;
  }

  /**
   * Create with an idempotency key. The key's mapping (`SET NX`) and the run live in different
   * slots, so they are written in two steps; a creator that crashed in between leaves a key that
   * points to a txId without a run. Whoever finds that waits `idempotencyWaitMs` for the run,
   * then fences the txId off (`void`, in the run's slot: the late creator's create then fails)
   * and takes the key over. Exactly one run is ever created per key.
   */
  private async createIdempotent(run: Run, outbox: readonly Effect[], key: string): Promise<CreateRunResult> {
    const { keys, scripts, client } = this.connection;
    const mapping = keys.idempotency(key);
    for (let round = 0; round < IDEMPOTENT_CREATE_ROUNDS; round += 1) {
      const holder = (await client.call('SET', mapping, run.txId, 'NX', 'GET')) as string | null;
      let ours = holder === null;
      if (!ours) {
        const holderTxId = holder as string;
        if (await this.awaitRunOrFence(holderTxId)) return { created: false, txId: holderTxId };
        const [swapped] = (await scripts.swapIdempotency([mapping], [holderTxId, run.txId])) as [number];
        ours = swapped === 1;
      }
      if (!ours) continue;
      const created = await this.createRecord(run, outbox, key);
      if (created === 1) {
        if (isTerminalRunState(run.state)) this.expireIdempotencyKey(key);
        return { created: true, txId: run.txId };
      }
      if (created === 0) {
        // The txId is taken by another run: give the key back, as if nothing had been stored.
        await scripts.swapIdempotency([mapping], [run.txId, '']);
        throw alreadyExists(run.txId);
      }
      // Fenced off: we were presumed crashed and the key has a new holder; read it again.
    }
    throw new MultiAgentsError(
      ErrorCode.Conflict,
      `idempotency key ${key}: still contested after ${IDEMPOTENT_CREATE_ROUNDS} rounds`,
      { details: { idempotencyKey: key } },
    );
  }

  /** True once `txId`'s run exists; false when it was fenced off instead (its creator is gone). */
  private async awaitRunOrFence(txId: string): Promise<boolean> {
    const { keys, scripts, client } = this.connection;
    const runKey = keys.run(txId);
    const deadline = Date.now() + this.idempotencyWaitMs;
    for (let pauseMs = 2; ; pauseMs = Math.min(pauseMs * 2, 100)) {
      const [version, fenced] = await client.hmget(runKey, 'v', 'void');
      if (version !== null) return true;
      if (fenced !== null) return false;
      if (Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
    return ((await scripts.voidRun([runKey], [VOID_TTL_MS])) as number) === 0;
  }

  /** The key's mapping lives in its own slot: it gets the run's retention in a separate command. */
  private expireIdempotencyKey(key: string): void {
    if (this.terminalRunTtlMs === 0) return;
    const { client, keys } = this.connection;
    this.connection.detach(
      'expiring an idempotency key',
      client.pexpire(keys.idempotency(key), this.terminalRunTtlMs),
    );
  }

  private mark(txId: string, version: number): Promise<unknown> {
    const { keys, scripts } = this.connection;
    return scripts.markOutbox([keys.outboxPending(), keys.outboxMarks()], [txId, version, this.clock.now()]);
  }

  private reindexCall(run: Run, version: number, listedState: RunState | ''): Promise<unknown> {
    const { keys, scripts } = this.connection;
    return scripts.reindexRun(
      [keys.runsMeta(), ...keys.runsByEveryState()],
      [
        run.txId,
        version,
        run.state,
        run.createdAt,
        redisCodec.encodeRunMeta(version, run.state, this.clock.now(), run.workflowId),
        listedState,
      ],
    );
  }

  private reindex(run: Run, version: number, listedState: RunState | ''): void {
    this.connection.detach('moving a run between state indexes', this.reindexCall(run, version, listedState));
  }

  /** Repairs what list() met: entries in the wrong index, and entries of runs that are gone. */
  private async repair(
    filter: RunFilter,
    stale: readonly RunRead[],
    missing: readonly string[],
  ): Promise<void> {
    if (stale.length === 0 && missing.length === 0) return;
    const { keys, scripts, client } = this.connection;
    const work: Promise<unknown>[] = stale.map(({ txId, version, run }) =>
      filter.state !== undefined
        ? this.reindexCall(run, version, filter.state)
        : client.zrem(keys.runsByWorkflow(filter.workflowId as string), txId),
    );
    if (missing.length > 0) {
      work.push(
        (async () => {
          const metas = await client.hmget(keys.runsMeta(), ...missing);
          const cutoff = this.clock.now() - this.inFlightGraceMs;
          await Promise.all(
            missing.map((txId, i) => {
              const meta = metas[i];
              const workflowId =
                (meta ? redisCodec.workflowIdOfRunMeta(meta) : undefined) ?? filter.workflowId;
              return scripts.dropRunIndex(
                [
                  keys.runsMeta(),
                  keys.runsAll(),
                  workflowId === undefined ? keys.runsAll() : keys.runsByWorkflow(workflowId),
                  ...keys.runsByEveryState(),
                ],
                [txId, cutoff],
              );
            }),
          );
        })(),
      );
    }
    try {
      await Promise.all(work);
    } catch (err) {
      // The page is right without the repair; the next list() meets the same entries again.
      this.connection.logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'index repair failed',
      );
    }
  }

  /** A CAS with a version no run can have: NOT_FOUND for an unknown run, else a conflict. */
  private async ensureExists(txId: string): Promise<undefined> {
    if ((await this.get(txId)) === undefined) throw new RunNotFoundError(txId);
    return undefined;
  }
}

function snapshot(reply: readonly string[]): StoredRun {
  const outbox: OutboxEntry[] = [];
  for (let i = 2; i < reply.length; i += 1) outbox.push(redisCodec.decodeOutboxItem(reply[i] as string));
  return { version: Number(reply[0]), run: redisCodec.decodeRun(reply[1] as string), outbox };
}

function alreadyExists(txId: string): AlreadyExistsError {
  return new AlreadyExistsError(`run ${txId} already exists`, { txId });
}

function assertLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new ValidationError('limit', ['must be an integer >= 1']);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}
