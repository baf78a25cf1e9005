import {
  ErrorCode,
  MultiAgentsError,
  RunNotFoundError,
  Topics,
  ValidationError,
  encodeEnvelope,
  isTerminalRunState,
  toErrorInfo,
  type Run,
  type RunState,
} from '@multiagents/contracts';
import {
  decodeListCursor,
  encodeListCursor,
  encodeRunMeta,
  LruMap,
  type CreateRunResult,
  type RunCounts,
  type RunFilter,
  type RunPage,
  type RunRevision,
  type RunStore,
  type StoredRun,
  type Timer,
  type Transition,
} from '@multiagents/core';
import type { KV } from '@nats-io/kv';
import type { Delivery } from '@multiagents/core';
import type { PublishAck as PubAck } from './jetstream-requests';
import { decodeToken, encodeToken } from './key-codec';
import { mapLimit } from './map-limit';
import { isWrongRevision, natsError, type KvRead, type NatsContext } from './nats-context';
import { windowStart, type DoneEntryKey, type LiveEntryKey } from './nats-names';
import { acknowledgeEarly } from './nats-subscription';
import type { NatsTimerQueue } from './nats-timer-queue';
import {
  decodeRecord,
  decodeRun,
  encodeRecord,
  type DecodedRunRecord,
  type LiveTimer,
} from './run-record-codec';

/** Reads in flight at once for a listing page, a repair pass or a retention pass. */
const READ_CONCURRENCY = 32;
/** Background tries of an outbox whose publish after a commit failed (about 30 s in all). */
const OUTBOX_RETRY_ATTEMPTS = 8;
/** Tries of one key listing whose listing consumer timed out or stalled (see keys()). */
const KEY_LISTING_ATTEMPTS = 3;

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || /timeout/i.test(err.message));
}
/** Records whose outbox this process already published again (so it does so once per revision). */
const REMEMBERED_REPUBLISHES = 10_000;
/** Finished runs one retention pass purges at most. */
const PURGE_BATCH = 1_000;

const EMPTY = new Uint8Array(0);

/** What this process knows of a run's latest revision: enough to commit on it without a read. */
interface Known {
  readonly revision: number;
  readonly version: number;
  readonly state: RunState;
  readonly createdAt: number;
  readonly workflowId: string;
  /**
   * The meta key exists (this process read it, or its own write of it was acknowledged): records
   * may leave the meta out. Never inferred from holding the meta: a record carries it too.
   */
  readonly metaConfirmed: boolean;
  /** The run's live timers, as the record lists them. */
  readonly timers: readonly LiveTimer[];
  /** The outbox of this revision failed to publish: the next commit publishes it again. */
  readonly unpublished?: Outbox;
}

/**
 * A run's meta as this process holds it. `stored`: its key `m.<txId>` is known to exist. A meta
 * taken from a record (its creator may have died before writing the key) or about to be written
 * is not: until it is, reads look for the key again, and commits keep the meta in the record and
 * write the key, or the run would lose its meta for every other reader.
 */
interface CachedMeta {
  readonly text: string;
  readonly stored: boolean;
}

/** What a write publishes besides its KV writes: its lifecycle event and timer wake-ups. */
interface Outbox {
  readonly event: { readonly id: string; readonly data: Uint8Array } | undefined;
  /** Wake-ups to publish: `[timerId, dueAt, version]`. */
  readonly timers: readonly LiveTimer[];
}

/** One KV or stream write of the phase after a record write. */
interface After {
  readonly send: () => Promise<PubAck>;
}

/** A listing candidate: one run, and the index entries that point at it. */
interface Candidate {
  readonly createdAt: number;
  readonly txToken: string;
  readonly live: boolean;
  readonly done: DoneEntryKey[];
}

/**
 * The {@link RunStore} on NATS JetStream KV and streams (server 2.9), with the semantics of the
 * memory store (one conformance suite). Layout (bucket `<prefix>-runs`, see NatsNames):
 * `r.<txId>` the record (header, every step record, the pending outbox, the live timers),
 * `m.<txId>` the write-once meta, `l.…` the live index, `d.…` the done index, `w.…` its windows.
 *
 * **One transition, one revision-checked write.** `commit` writes the record with
 * `Nats-Expected-Last-Subject-Sequence` = the cached revision and no read first (the revision is
 * the KV revision of `r.<txId>`, as a string). The record carries the header, the step records,
 * the run's live timers and the pending outbox — the transition's lifecycle event — never the
 * context (rebuilt from the step records) nor copies of commands (`inFlightCommands` rebuilds
 * them). After the write, the commands, the event and the timer wake-ups are published
 * pipelined (sent together, then every PubAck awaited; the delivery that caused the transition
 * is acknowledged in the same flush), each with `Nats-Msg-Id` = its envelope id (or
 * `<timer id>@<due>`), so publishing one again is a harmless duplicate within the duplicate
 * window. The next write drops the outbox: there is no second write to clear it.
 *
 * **A crash between the write and the publishes.** Commands: the orchestrator sends again what a
 * run awaits (`redispatchAfterMs`, and its recovery sweep, which lists live runs). The rest is
 * recovered by whoever reads the record next, once it is older than `outboxGraceMs` (the
 * orchestrator's sweep reads every live run older than `redispatchAfterMs` every
 * `recoverySweepIntervalMs` — 30 s and 10 s in `openBackend`'s NATS settings, so a record is read
 * within about 40 s of its write; their sum must stay under `duplicateWindowMs` less the grace):
 * the event is published again while the record is younger than the duplicate window (the server
 * drops the copy of one that had gone out), and so is the wake-up of every live timer overdue by the
 * grace — once per revision per process. A transition that finishes a run moves it from the live
 * index to the done index only once its event is acknowledged (the moves wait for its PubAck: one
 * more round trip, at a run's end only): a finished record still listed as live proves its event
 * may not have been stored, so a listing or maintenance pass publishes it again (even past the
 * window) and finishes the move. A bus that refuses the event (full, no leader) leaves the run
 * listed as live until then.
 *
 * **Create** is a KV create (`r.<txId>` must not exist), preceded in the same flush by the run's
 * index entry (same stream, so the server stores it first: a run is never unlisted). The first
 * record carries the meta; the creator writes `m.<txId>` with its publishes, and records leave
 * the meta out once this process knows the meta key exists.
 *
 * **Listing** writes the index only when a run moves between live and finished (or between
 * finished states), never on every step, and makes no JetStream API call per step. Live runs
 * are few and listed whole; finished runs are listed by time window, newest first. Index
 * entries are hints: every candidate is checked against its record.
 *
 * **Timers** are wake-up messages on the timer stream (see {@link NatsTimerQueue}); those due
 * within `timerDeferMs` stay in the memory of the writer, which fires them itself.
 *
 * @example
 * const backend = await createNatsBackend({ servers: 'nats://127.0.0.1:4222' });
 * const orchestrator = new Orchestrator({ ...backend, redispatchAfterMs: 30_000 });
 */
export class NatsRunStore implements RunStore {
  private readonly known: LruMap<string, Known>;
  private readonly metas: LruMap<string, CachedMeta>;
  private readonly republished = new LruMap<string, true>(REMEMBERED_REPUBLISHES);
  /** Windows whose directory entry this process wrote (trusted while recent: see doneEntryWrites). */
  private readonly knownWindows = new Set<number>();
  private readonly background = new Set<Promise<unknown>>();
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private maintaining: Promise<unknown> | undefined;
  private closed = false;

  constructor(
    private readonly ctx: NatsContext,
    private readonly kv: KV,
    private readonly timers: NatsTimerQueue,
  ) {
    this.known = new LruMap(ctx.options.cachedRuns);
    this.metas = new LruMap(ctx.options.cachedRuns);
  }

  async create(transition: Transition): Promise<CreateRunResult> {
    this.assertOpen();
    const run = transition.run;
    assertRun(run);
    const { ctx } = this;
    const { names } = ctx;
    const txId = run.txId;
    const event = this.eventOf(transition);
    const messages = this.encodeMessages(transition);
    const timers = liveTimers(run, [], transition, 1);
    const data = encodeRecord(run, { version: 1, event, timers, withMeta: true });
    // The index entry first, in the same flush: the server stores it before the record, so a run
    // that exists is always listed (a loser's entry is a hint that reads skip).
    const index = isTerminalRunState(run.state)
      ? this.doneEntryWrites(run.state, run.workflowId, run.createdAt, txId)
      : [() => ctx.kvWrite(names.runsBucket, names.liveEntry(run.workflowId, run.createdAt, txId), EMPTY)];
    const indexAcks = index.map((send) => send());
    const created = ctx.kvWrite(names.runsBucket, names.runRecord(txId), data, {
      expectedRevision: 0,
      retry: false,
    });
    const [indexOutcome, createOutcome] = await Promise.all([
      Promise.allSettled(indexAcks),
      created.then(
        (ack) => ({ ok: true as const, ack }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    ]);
    if (!createOutcome.ok) {
      if (!isWrongRevision(createOutcome.err))
        throw natsError(`create of run ${txId}`, createOutcome.err, { txId });
      const existing = await this.get(txId);
      if (existing === undefined) {
        throw new MultiAgentsError(
          ErrorCode.Conflict,
          `run ${txId} exists and vanished while read; try again`,
          {
            details: { txId },
          },
        );
      }
      return { created: false, stored: existing };
    }
    const failedIndex = indexOutcome.find((o) => o.status === 'rejected');
    if (failedIndex !== undefined) {
      ctx.logger.error(
        { txId, err: toErrorInfo(failedIndex.reason).message },
        'the index entry of a new run was not written; the run is not listed',
      );
    }
    const revision = createOutcome.ack.seq;
    const meta = encodeRunMeta(run);
    this.metas.set(txId, { text: meta, stored: false });
    this.remember(txId, {
      revision,
      version: 1,
      state: run.state,
      createdAt: run.createdAt,
      workflowId: run.workflowId,
      metaConfirmed: false,
      timers,
    });
    const outbox = this.afterCommit(transition, 1, event);
    const metaWrite = () =>
      ctx.kvWrite(names.runsBucket, names.runMeta(txId), new TextEncoder().encode(meta));
    const metaOk = await this.publishAfter(txId, revision, outbox, {
      first: { send: metaWrite },
      messages,
      index: [],
    });
    if (metaOk) this.confirmMeta(txId, revision);
    return { created: true, stored: { run, version: 1, revision: String(revision) } };
  }

  async commit(expected: RunRevision, transition: Transition): Promise<RunRevision | undefined> {
    this.assertOpen();
    const run = transition.run;
    assertRun(run);
    const { ctx } = this;
    const { names } = ctx;
    const txId = run.txId;
    const revision = Number(expected.revision);
    if (!Number.isSafeInteger(revision) || revision < 0 || !Number.isSafeInteger(expected.version)) {
      throw new ValidationError('commit', ['expected must be a version and revision this store returned']);
    }
    let known = this.known.get(txId);
    if (known === undefined || known.revision !== revision) {
      // Not a revision this process wrote or read (it forgot it, or was given another's): learn
      // what the index needs from the record. Never on the orchestrator's normal path.
      const current = await this.read(txId);
      if (current === undefined) throw new RunNotFoundError(txId);
      if (current.read.revision !== revision) {
        ctx.counters.casConflicts += 1;
        return undefined;
      }
      known = this.known.get(txId);
      if (known === undefined) throw new RunNotFoundError(txId);
    }
    const version = expected.version + 1;
    const event = this.eventOf(transition);
    const messages = this.encodeMessages(transition);
    const withMeta = !known.metaConfirmed;
    const timers = liveTimers(run, known.timers, transition, version);
    const data = encodeRecord(run, { version, event, timers, withMeta });
    const wasDone = isTerminalRunState(known.state);
    const isDone = isTerminalRunState(run.state);
    const createdAt = known.createdAt;
    const workflowId = known.workflowId;

    // Before the record, in the same flush (stored first): the meta key while it is not known to
    // exist, and the live entry of a finished run an operator reopens.
    const before: Promise<PubAck>[] = [];
    if (withMeta) {
      const meta = this.metas.get(txId)?.text ?? encodeRunMeta(run);
      before.push(ctx.kvWrite(names.runsBucket, names.runMeta(txId), new TextEncoder().encode(meta)));
    }
    if (wasDone && !isDone) {
      before.push(ctx.kvWrite(names.runsBucket, names.liveEntry(workflowId, createdAt, txId), EMPTY));
    }
    const beforeOutcome = Promise.allSettled(before);
    let ack: PubAck;
    try {
      ack = await ctx.kvWrite(names.runsBucket, names.runRecord(txId), data, {
        expectedRevision: revision,
        retry: false,
      });
    } catch (err) {
      await beforeOutcome;
      if (!isWrongRevision(err)) throw natsError(`commit of run ${txId}`, err, { txId });
      ctx.counters.casConflicts += 1;
      this.known.delete(txId);
      // Refused: either another writer moved the run on, or there is no run at all. A read that
      // fails says neither: report a conflict, and the caller reads the run again.
      let exists = true;
      try {
        exists = (await ctx.kvGet(names.runsBucket, names.runRecord(txId))) !== undefined;
      } catch {
        exists = true;
      }
      if (!exists) throw new RunNotFoundError(txId);
      return undefined;
    }
    const metaWritten = withMeta && (await beforeOutcome)[0]?.status === 'fulfilled';
    if (metaWritten) this.metaStored(txId);
    this.remember(txId, {
      revision: ack.seq,
      version,
      state: run.state,
      createdAt,
      workflowId,
      metaConfirmed: known.metaConfirmed || metaWritten,
      timers,
    });
    const outbox = this.afterCommit(transition, version, event);

    const after: After[] = [...messages];
    // An outbox this process failed to publish before goes again with this one.
    if (known.unpublished !== undefined) after.push(...this.outboxMessages(known.unpublished));
    // The index follows the publishes: a finished run still listed as live tells a reader that
    // its last publishes may not have happened.
    const index: After[] = [];
    if (!wasDone && isDone) {
      index.push(
        ...this.doneEntryWrites(run.state, workflowId, createdAt, txId).map((send): After => ({
          send,
        })),
        { send: () => this.deleteKey(names.liveEntry(workflowId, createdAt, txId)) },
      );
    } else if (wasDone && known.state !== run.state) {
      const previous = known.state;
      if (isDone) {
        index.push(
          ...this.doneEntryWrites(run.state, workflowId, createdAt, txId).map((send): After => ({
            send,
          })),
        );
      }
      index.push({
        send: () =>
          this.deleteKey(names.doneEntry(previous, this.windowOf(createdAt), workflowId, createdAt, txId)),
      });
    }
    await this.publishAfter(txId, ack.seq, outbox, {
      messages: after,
      index,
      ...(transition.ack === undefined ? {} : { ack: transition.ack }),
    });
    return { version, revision: String(ack.seq) };
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    this.assertOpen();
    if (typeof txId !== 'string' || txId === '') return undefined;
    const found = await this.read(txId);
    if (found === undefined) return undefined;
    // A finished run's outbox is recovered through the index (see check): reading a finished run
    // must not publish its last event again.
    if (!isTerminalRunState(found.record.state))
      void this.recoverOutbox(txId, found.read, found.record, false);
    return found.stored;
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    this.assertOpen();
    if (!Number.isInteger(limit) || limit < 1)
      throw new ValidationError('limit', ['must be an integer >= 1']);
    const after = cursor === undefined ? undefined : tokenKeyOf(decodeListCursor(cursor));
    const lower = filter.createdAfter ?? -Infinity;
    const upper = filter.createdBefore ?? Infinity;
    const state = filter.state;
    const inRange = (k: { createdAt: number; txToken: string }): boolean =>
      k.createdAt >= lower &&
      k.createdAt <= upper &&
      (after === undefined || compareNewestFirst(k, after) > 0);
    const { names } = this.ctx;

    let live: Candidate[] = [];
    if (state === undefined || !isTerminalRunState(state)) {
      live = (await this.keys(names.liveFilter(filter.workflowId)))
        .map((key) => names.parseLiveEntry(key))
        .filter((k): k is LiveEntryKey => k !== undefined && inRange(k))
        .map((k) => ({ createdAt: k.createdAt, txToken: k.txToken, live: true, done: [] }))
        .sort(compareNewestFirst);
    }
    const width = this.ctx.options.listWindowMs;
    const ceiling = Math.min(upper, after?.createdAt ?? Infinity);
    const windows =
      state !== undefined && !isTerminalRunState(state)
        ? []
        : (await this.keys('w.>'))
            .map((key) => names.parseWindowEntry(key))
            .filter((w): w is number => w !== undefined && w <= ceiling && w + width > lower)
            .sort((a, b) => b - a);

    const runs: Run[] = [];
    let last: { createdAt: number; txToken: string } | undefined;
    /** Checks candidates in order; true once the page is full and one more match proved a next page. */
    const take = async (batch: Candidate[]): Promise<boolean> => {
      for (let i = 0; i < batch.length;) {
        const slice = batch.slice(i, i + Math.max(1, limit + 1 - runs.length));
        i += slice.length;
        const found = await mapLimit(slice, READ_CONCURRENCY, (c) => this.check(c, filter));
        for (const [j, run] of found.entries()) {
          if (run === undefined) continue;
          if (runs.length === limit) return true;
          runs.push(run);
          const c = slice[j] as Candidate;
          last = { createdAt: c.createdAt, txToken: c.txToken };
        }
      }
      return false;
    };
    for (const window of windows) {
      const done = (await this.keys(names.doneFilter(window, state, filter.workflowId)))
        .map((key) => names.parseDoneEntry(key))
        .filter((k): k is DoneEntryKey => k !== undefined && inRange(k));
      // Live runs at least as new as this window go before it (they are newer than anything below).
      const newer = live.filter((c) => c.createdAt >= window);
      live = live.filter((c) => c.createdAt < window);
      if (await take(merge(newer, done))) return page(runs, last);
    }
    if (await take(live)) return page(runs, last);
    return { runs };
  }

  /**
   * Runs per state. Finished runs are counted from their index keys (no record read); live runs
   * have one index entry each without their state, so their records are read: the cost grows with
   * the runs in flight, which is why a metrics scrape, not the per-step path, calls this.
   */
  async countByState(): Promise<RunCounts> {
    this.assertOpen();
    const { names } = this.ctx;
    const counts: Partial<Record<RunState, number>> = {};
    const add = (state: string): void => {
      const known = state as RunState;
      counts[known] = (counts[known] ?? 0) + 1;
    };
    const windows = (await this.keys('w.>'))
      .map((key) => names.parseWindowEntry(key))
      .filter((w): w is number => w !== undefined);
    const seen = new Set<string>();
    for (const window of windows) {
      for (const key of await this.keys(names.doneFilter(window))) {
        const entry = names.parseDoneEntry(key);
        const state = entry === undefined ? undefined : decodeToken(entry.stateToken);
        // One entry per run: a run moved between windows by an operator is counted once.
        if (entry === undefined || state === undefined || seen.has(entry.txToken)) continue;
        seen.add(entry.txToken);
        add(state);
      }
    }
    const live = (await this.keys(names.liveFilter()))
      .map((key) => names.parseLiveEntry(key))
      .filter((k): k is LiveEntryKey => k !== undefined && !seen.has(k.txToken));
    const states = await mapLimit(live, READ_CONCURRENCY, async (entry) => {
      const txId = decodeToken(entry.txToken);
      if (txId === undefined) return undefined;
      const found = await this.read(txId).catch(() => undefined);
      return found?.record.state;
    });
    for (const state of states) if (state !== undefined && !isTerminalRunState(state)) add(state);
    return counts;
  }

  async claimDueTimers(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    this.assertOpen();
    const problems: string[] = [];
    if (!Number.isFinite(now) || now < 0) problems.push('now must be a time >= 0');
    if (!Number.isInteger(limit) || limit < 1) problems.push('limit must be an integer >= 1');
    if (!Number.isFinite(leaseMs) || leaseMs <= 0) problems.push('leaseMs must be a number > 0');
    if (problems.length > 0) throw new ValidationError('claimDueTimers', problems);
    return this.timers.claim(now, limit, leaseMs);
  }

  async completeTimers(timerIds: readonly string[]): Promise<void> {
    this.assertOpen();
    this.timers.complete(timerIds);
  }

  /**
   * One maintenance pass (what `createNatsBackend({ maintenance })` runs periodically): repairs
   * what crashed writers left (a finished run still listed as live gets its outbox published
   * again and its index moved; an entry whose run does not exist goes), compacts the live index
   * (its delete markers are purged with one stream purge, the live entries written again first),
   * and with `terminalRunTtlMs` purges finished runs that ended before `now - terminalRunTtlMs`.
   * JetStream API calls: a few per pass plus three purges per expired run. Returns what it did.
   */
  async maintain(now = this.ctx.clock.now()): Promise<{ repaired: number; purged: number }> {
    this.assertOpen();
    const repaired = await this.repairLiveIndex();
    const ttl = this.ctx.options.maintenance?.terminalRunTtlMs;
    const purged = ttl === undefined ? 0 : await this.purgeFinished(now - ttl);
    return { repaired, purged };
  }

  /** Starts the periodic maintenance (the backend calls it when options ask for it). */
  startMaintenance(intervalMs: number): void {
    if (this.maintenanceTimer !== undefined) return;
    this.maintenanceTimer = setInterval(() => {
      if (this.closed || this.maintaining !== undefined) return;
      this.maintaining = this.maintain()
        .catch((err: unknown) =>
          this.ctx.logger.warn({ err: toErrorInfo(err).message }, 'maintenance pass failed; will retry'),
        )
        .finally(() => (this.maintaining = undefined));
    }, intervalMs);
    this.maintenanceTimer.unref();
  }

  /** Stops maintenance, hands held timers back, waits for background republishes; refuses later calls. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.maintenanceTimer);
    await this.maintaining;
    await this.timers.close();
    await Promise.allSettled([...this.background]);
  }

  // ---- writing -------------------------------------------------------------------------------

  private remember(txId: string, known: Known): void {
    this.known.set(txId, known);
  }

  private confirmMeta(txId: string, revision: number): void {
    this.metaStored(txId);
    const known = this.known.get(txId);
    if (known !== undefined && known.revision === revision)
      this.known.set(txId, { ...known, metaConfirmed: true });
  }

  /** The server acknowledged a write of the meta key of `txId`. */
  private metaStored(txId: string): void {
    const cached = this.metas.get(txId);
    if (cached !== undefined && !cached.stored) this.metas.set(txId, { ...cached, stored: true });
  }

  /** A transition's lifecycle event, encoded first: a bad envelope fails before any write. */
  private eventOf(transition: Transition): Outbox['event'] {
    const event = transition.event;
    return event === undefined
      ? undefined
      : { id: event.id, data: encodeEnvelope(event, this.ctx.options.codec) };
  }

  /**
   * After a committed write at `version`: tells the timer queue what the write cancelled and
   * scheduled (so stale wake-ups are dropped), keeps the timers due soon in memory, and returns
   * the outbox to publish (the event, and the wake-ups of the other timers).
   */
  private afterCommit(transition: Transition, version: number, event: Outbox['event']): Outbox {
    this.timers.noteScheduled(
      transition.schedule.map((t) => t.id),
      version,
    );
    this.timers.noteCancelled(transition.cancel, version);
    const publish = isTerminalRunState(transition.run.state)
      ? []
      : this.timers.defer(transition.schedule, version, this.ctx.clock.now());
    return { event, timers: publish.map((t) => [t.id, t.dueAt, version] as const) };
  }

  /** The commands of a transition, ready to publish. */
  private encodeMessages(transition: Transition): After[] {
    const { ctx } = this;
    return transition.commands.map((command) => {
      const subject = ctx.names.topicSubject(Topics.command(command.payload.worker));
      const data = encodeEnvelope(command, ctx.options.codec);
      const msgID = ctx.names.publishId(command.id);
      return {
        send: () => ctx.publish(subject, data, { msgID }),
      };
    });
  }

  /** The lifecycle event and the timer wake-ups of an outbox, ready to publish. */
  private outboxMessages(outbox: Outbox): After[] {
    const { ctx } = this;
    const after: After[] = [];
    const event = outbox.event;
    if (event !== undefined) {
      const subject = ctx.names.topicSubject(Topics.events);
      const msgID = ctx.names.publishId(event.id);
      after.push({
        send: () => ctx.publish(subject, event.data, { msgID }),
      });
    }
    for (const [timerId, dueAt, version] of outbox.timers) {
      const wakeUp = this.timers.wakeUp(timerId, dueAt, version);
      after.push({
        send: () => ctx.publish(wakeUp.subject, wakeUp.data, { msgID: wakeUp.msgID }),
      });
    }
    return after;
  }

  /**
   * The phase after a record write: sends `first` (the meta key, for a create), the commands and
   * the outbox, in this order and all at once, then awaits every ack; then the index moves, only
   * once the outbox is stored. A publish that fails for good does not undo the committed write: it
   * is logged and counted, and the outbox is kept to be published again with this process's next
   * commit of the run (and by any read past the grace). Returns whether `first` was written.
   *
   * The index waits for the outbox because a finished run leaves the live index with its last
   * move, and nothing reads a finished run's record again to publish its event (SPEC §9.5): the
   * live entry kept until the event is stored is what makes a listing or maintenance pass publish
   * it again (see finishMove), after a crash too. One more round trip, at a run's end only.
   */
  private async publishAfter(
    txId: string,
    revision: number,
    outbox: Outbox,
    parts: {
      readonly first?: After;
      readonly messages: readonly After[];
      readonly index: readonly After[];
      readonly ack?: Delivery;
    },
  ): Promise<boolean> {
    const leading = [...(parts.first === undefined ? [] : [parts.first]), ...parts.messages];
    const outboxSends = this.outboxMessages(outbox);
    // Sent synchronously, so they leave in one write to the socket, the delivery's ack last.
    const sent = [...leading, ...outboxSends].map((w) => w.send());
    if (parts.ack !== undefined) acknowledgeEarly(parts.ack);
    const outcomes = await Promise.allSettled(sent);
    const outboxOutcomes = outcomes.slice(leading.length);
    const outboxStored = outboxOutcomes.every((o) => o.status === 'fulfilled');
    const indexOutcomes =
      outboxStored && parts.index.length > 0
        ? await Promise.allSettled(parts.index.map((w) => w.send()))
        : [];
    const failed = [...outcomes, ...indexOutcomes].filter(
      (o): o is PromiseRejectedResult => o.status === 'rejected',
    );
    if (failed.length > 0) {
      this.ctx.counters.outboxPublishFailures += 1;
      this.ctx.logger.warn(
        { txId, failed: failed.length, err: toErrorInfo(failed[0]?.reason).message },
        'publishing after a committed write failed; the outbox stays in the record for recovery',
      );
      const known = this.known.get(txId);
      if (known !== undefined && known.revision === revision)
        this.known.set(txId, { ...known, unpublished: outbox });
      // Sooner than a recovery by a listing: send the failed outbox messages again in the
      // background (de-duplicated by id), a bounded number of times. The index is left to the
      // listing's repair, which checks the record first (a run reopened meanwhile stays live).
      const retry = outboxSends.filter((_, i) => outboxOutcomes[i]?.status === 'rejected');
      if (retry.length > 0) void this.republishInBackground(txId, retry);
    }
    return parts.first !== undefined && outcomes[0]?.status === 'fulfilled';
  }

  /** Sends `messages` again until each is acknowledged, or OUTBOX_RETRY_ATTEMPTS, or close. */
  private async republishInBackground(txId: string, messages: readonly After[]): Promise<void> {
    let pending = [...messages];
    let delayMs = 500;
    for (let attempt = 1; attempt <= OUTBOX_RETRY_ATTEMPTS && pending.length > 0; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
      if (this.ctx.isClosed) return;
      const outcomes = await Promise.allSettled(pending.map((m) => m.send()));
      pending = pending.filter((_, i) => outcomes[i]?.status === 'rejected');
      delayMs = Math.min(5_000, delayMs * 2);
    }
    if (pending.length === 0) this.ctx.counters.outboxesRepublished += 1;
    else this.ctx.logger.warn({ txId, failed: pending.length }, 'republishing an outbox gave up');
  }

  /**
   * The writes that list a finished run: its window's directory entry and its done entry. The
   * directory entry is written once per process for a recent window (the current or the one
   * before), and always for an older one: retention purges the entry of a window older than two
   * windows past its cutoff (see purgeFinished), possibly in another process, after which this
   * process's memory of having written it is wrong (a long run finishing there would be unlisted).
   */
  private doneEntryWrites(
    state: RunState,
    workflowId: string,
    createdAt: number,
    txId: string,
  ): Array<() => Promise<PubAck>> {
    const { ctx } = this;
    const window = this.windowOf(createdAt);
    const writes: Array<() => Promise<PubAck>> = [];
    const recent = window + 2 * ctx.options.listWindowMs > ctx.clock.now();
    if (!recent || !this.knownWindows.has(window)) {
      writes.push(async () => {
        const ack = await ctx.kvWrite(ctx.names.runsBucket, ctx.names.windowEntry(window), EMPTY);
        if (recent) this.knownWindows.add(window);
        return ack;
      });
    }
    writes.push(() =>
      ctx.kvWrite(
        ctx.names.runsBucket,
        ctx.names.doneEntry(state, window, workflowId, createdAt, txId),
        EMPTY,
      ),
    );
    return writes;
  }

  private deleteKey(key: string, expectedRevision?: number): Promise<PubAck> {
    return this.ctx.kvWrite(this.ctx.names.runsBucket, key, EMPTY, {
      operation: 'DEL',
      ...(expectedRevision === undefined ? {} : { expectedRevision, retry: false }),
    });
  }

  private windowOf(createdAt: number): number {
    return windowStart(createdAt, this.ctx.options.listWindowMs);
  }

  // ---- reading -------------------------------------------------------------------------------

  /** The record of `txId` with its run, and remembers its revision; undefined when there is none. */
  private async read(
    txId: string,
  ): Promise<{ read: KvRead; record: DecodedRunRecord; stored: StoredRun } | undefined> {
    const { ctx } = this;
    const cachedMeta = this.metas.get(txId);
    let recordRead: KvRead | undefined;
    let metaRead: KvRead | undefined;
    try {
      // The meta key is read again while it is not known to exist: a cached copy of a record's
      // meta says nothing about the key (see CachedMeta).
      [recordRead, metaRead] = await Promise.all([
        ctx.kvGet(ctx.names.runsBucket, ctx.names.runRecord(txId)),
        cachedMeta?.stored === true ? undefined : ctx.kvGet(ctx.names.runsBucket, ctx.names.runMeta(txId)),
      ]);
    } catch (err) {
      throw natsError(`read of run ${txId}`, err, { txId });
    }
    if (recordRead === undefined) return undefined;
    const record = decodeRecord(recordRead.data);
    const keyExists = cachedMeta?.stored === true || metaRead !== undefined;
    const meta =
      metaRead !== undefined ? new TextDecoder().decode(metaRead.data) : (cachedMeta?.text ?? record.meta);
    if (meta === undefined) {
      throw new MultiAgentsError(
        ErrorCode.Internal,
        `run ${txId} has lost its meta (a broker that forgot a write?)`,
        {
          retryable: false,
          details: { txId },
        },
      );
    }
    this.metas.set(txId, { text: meta, stored: keyExists });
    const run = decodeRun(record, meta);
    this.remember(txId, {
      revision: recordRead.revision,
      version: record.version,
      state: record.state,
      createdAt: record.createdAt,
      workflowId: record.workflowId,
      metaConfirmed: keyExists,
      timers: record.timers,
    });
    return {
      read: recordRead,
      record,
      stored: { run, version: record.version, revision: String(recordRead.revision) },
    };
  }

  /**
   * Publishes again what a record's writer may have died before publishing (or deferred, then
   * died), once the record is older than the grace and at most once per revision per process:
   *
   * - its lifecycle event, while the record is younger than the duplicate window (so the server
   *   drops the copy of one that had gone out), or always with `always` (a finished run still
   *   listed as live proves that its publishes did not all happen);
   * - the wake-up of every live timer overdue by more than the grace that this process does not
   *   hold itself (a duplicate wake-up is harmless: the engine ignores a timer that already fired).
   *
   * Runs in the background of the read.
   */
  private recoverOutbox(
    txId: string,
    read: KvRead,
    record: DecodedRunRecord,
    always: boolean,
  ): Promise<void> {
    const { options } = this.ctx;
    const now = this.ctx.clock.now();
    const age = now - read.writtenAt;
    if (age < options.outboxGraceMs) return Promise.resolve();
    const base = `${txId}@${read.revision}`;
    let event: Outbox['event'];
    if (
      record.event !== undefined &&
      record.eventId !== undefined &&
      (always || age < options.duplicateWindowMs - options.outboxGraceMs) &&
      this.republished.get(base) === undefined
    ) {
      event = { id: record.eventId, data: record.event };
    }
    const timers = record.timers.filter(
      ([timerId, dueAt]) =>
        dueAt <= now - options.outboxGraceMs &&
        !this.timers.holds(timerId) &&
        this.republished.get(`${base}:${timerId}`) === undefined,
    );
    if (event === undefined && timers.length === 0) return Promise.resolve();
    const keys = [...(event === undefined ? [] : [base]), ...timers.map(([timerId]) => `${base}:${timerId}`)];
    for (const key of keys) this.republished.set(key, true);
    this.ctx.counters.outboxesRepublished += 1;
    const work = Promise.allSettled(this.outboxMessages({ event, timers }).map((m) => m.send())).then(
      (outcomes) => {
        const failed = outcomes.find((o) => o.status === 'rejected');
        if (failed !== undefined) {
          for (const key of keys) this.republished.delete(key);
          this.ctx.logger.warn(
            { txId, err: toErrorInfo(failed.reason).message },
            'republishing an outbox failed',
          );
        } else {
          this.ctx.logger.info(
            { txId, version: record.version, event: event !== undefined, timers: timers.length },
            'outbox of an idle record published again',
          );
        }
      },
    );
    return this.track(work);
  }

  private track(work: Promise<void>): Promise<void> {
    this.background.add(work);
    void work.finally(() => this.background.delete(work));
    return work;
  }

  /**
   * The run a listing candidate stands for, if an entry of it describes the run's record and the
   * filter matches; repairs a finished run still listed as live (see recoverOutbox).
   */
  private async check(candidate: Candidate, filter: RunFilter): Promise<Run | undefined> {
    const txId = decodeToken(candidate.txToken);
    if (txId === undefined) return undefined;
    const found = await this.read(txId).catch((err: unknown) => {
      this.ctx.logger.warn({ txId, err: toErrorInfo(err).message }, 'listing skipped an unreadable run');
      return undefined;
    });
    if (found === undefined) return undefined;
    const { record, read } = found;
    if (record.createdAt !== candidate.createdAt) return undefined;
    const done = isTerminalRunState(record.state);
    const describes =
      (candidate.live && !done) || candidate.done.some((d) => d.stateToken === encodeToken(record.state));
    if (candidate.live && done && candidate.done.length === 0) {
      await this.finishMove(txId, read, record);
    } else if (!done) {
      void this.recoverOutbox(txId, read, record, false);
    }
    if (!describes && !(candidate.live && done && filter.state === undefined)) return undefined;
    if (filter.state !== undefined && record.state !== filter.state) return undefined;
    if (filter.workflowId !== undefined && record.workflowId !== filter.workflowId) return undefined;
    return found.stored.run;
  }

  /**
   * A finished run still listed as live, written longer ago than the grace: its writer died
   * between the record and the index move. Publishes its outbox again and moves it.
   */
  private async finishMove(txId: string, read: KvRead, record: DecodedRunRecord): Promise<boolean> {
    const age = this.ctx.clock.now() - read.writtenAt;
    if (age < this.ctx.options.outboxGraceMs) return false;
    await this.recoverOutbox(txId, read, record, true);
    const { names } = this.ctx;
    try {
      await Promise.all(
        this.doneEntryWrites(record.state, record.workflowId, record.createdAt, txId).map((w) => w()),
      );
      await this.deleteKey(names.liveEntry(record.workflowId, record.createdAt, txId));
      this.ctx.counters.indexRepairs += 1;
      return true;
    } catch (err) {
      this.ctx.logger.warn(
        { txId, err: toErrorInfo(err).message },
        'moving a finished run to the done index failed',
      );
      return false;
    }
  }

  /** The keys of the runs bucket matching `filter`, delete markers left out. */
  private async keys(filter: string): Promise<string[]> {
    // Each listing is an ephemeral consumer, placed on one of the bucket's replicas. After a server
    // of a cluster died, JetStream (2.9) may still place it there until the server is back, and
    // the listing times out: another try is placed anew (checked on a 3-node cluster: about one
    // listing in three timed out while the killed server stayed down).
    // A listing can also stall on one server: the client ends it when the consumer reports no
    // pending message, and a key deleted between its `info` and its delivery (a run finishing
    // while the listing runs) leaves it waiting for a heartbeat that may never come. So a listing
    // that yields nothing for twice the request timeout is stopped and tried anew.
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.keysOnce(filter);
      } catch (err) {
        if (attempt < KEY_LISTING_ATTEMPTS && isTimeout(err)) continue;
        throw natsError(`listing keys ${filter}`, err, { filter });
      }
    }
  }

  /** One key listing, stopped with a TimeoutError when no key or end came for a while. */
  private async keysOnce(filter: string): Promise<string[]> {
    const listing = await this.kv.keys(filter);
    const keys = listing[Symbol.asyncIterator]();
    const idleMs = 2 * this.ctx.options.requestTimeoutMs;
    const out: string[] = [];
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<'idle'>((resolve) => {
        timer = setTimeout(resolve, idleMs, 'idle');
      });
      const next = await Promise.race([keys.next(), idle]).finally(() => clearTimeout(timer));
      if (next === 'idle') {
        listing.stop();
        const err = new Error(`no key and no end of the listing within ${idleMs} ms`);
        err.name = 'TimeoutError';
        throw err;
      }
      if (next.done === true) return out;
      out.push(next.value);
    }
  }

  // ---- maintenance ---------------------------------------------------------------------------

  /**
   * Checks every live entry against its record (repairing as {@link check} does, and deleting
   * entries whose run does not exist or is another run, once past the grace), then drops the
   * live index's delete markers: every live entry is written again (compare-and-set on its
   * revision), and one purge removes every live-index message up to the stream's sequence
   * taken before the listing. Skips the purge if a rewrite failed (it would drop a live entry).
   */
  private async repairLiveIndex(): Promise<number> {
    const { ctx } = this;
    const { names } = ctx;
    const stream = names.runsStream;
    const lastSeq = (await ctx.jsm.streams.info(stream)).state.last_seq;
    const entries: Array<{ key: string; revision: number; writtenAt: number }> = [];
    // Headers only: the values are empty anyway. The implementation reads `headers_only`, the
    // typings do not list it.
    const history = await this.kv.history({ key: 'l.>', headers_only: true } as { key: string });
    for await (const entry of history) {
      if (entry.operation === 'PUT') {
        entries.push({ key: entry.key, revision: entry.revision, writtenAt: entry.created.getTime() });
      }
    }
    let repaired = 0;
    let rewriteFailed = false;
    await mapLimit(entries, READ_CONCURRENCY, async (entry) => {
      const parsed = names.parseLiveEntry(entry.key);
      const txId = parsed === undefined ? undefined : decodeToken(parsed.txToken);
      const old = ctx.clock.now() - entry.writtenAt >= ctx.options.outboxGraceMs;
      let found: Awaited<ReturnType<NatsRunStore['read']>>;
      try {
        found = txId === undefined ? undefined : await this.read(txId);
      } catch {
        rewriteFailed = true;
        return;
      }
      const dangling = found === undefined || found.record.createdAt !== parsed?.createdAt;
      if (old && dangling) {
        // A creator that lost its race or died before its record, or a run purged meanwhile.
        try {
          await this.deleteKey(entry.key, entry.revision);
          ctx.counters.indexRepairs += 1;
          repaired += 1;
        } catch (err) {
          if (!isWrongRevision(err)) rewriteFailed = true;
        }
        return;
      }
      if (found !== undefined && txId !== undefined && !dangling) {
        if (isTerminalRunState(found.record.state)) {
          if (await this.finishMove(txId, found.read, found.record)) {
            repaired += 1;
            return;
          }
        } else {
          void this.recoverOutbox(txId, found.read, found.record, false);
        }
      }
      if (entry.revision > lastSeq) return;
      try {
        await ctx.kvWrite(names.runsBucket, entry.key, EMPTY, {
          expectedRevision: entry.revision,
          retry: false,
        });
      } catch (err) {
        // Changed meanwhile (deleted, or written again): its newer message is above lastSeq.
        if (!isWrongRevision(err)) rewriteFailed = true;
      }
    });
    if (!rewriteFailed) {
      await ctx.purgeSubject(stream, names.kvSubject(names.runsBucket, 'l.>'), lastSeq + 1);
    }
    return repaired;
  }

  /** Purges finished runs that ended before `cutoff`, oldest windows first, at most PURGE_BATCH. */
  private async purgeFinished(cutoff: number): Promise<number> {
    const { ctx } = this;
    const { names } = ctx;
    const width = ctx.options.listWindowMs;
    const windows = (await this.keys('w.>'))
      .map((key) => names.parseWindowEntry(key))
      .filter((w): w is number => w !== undefined && w <= cutoff)
      .sort((a, b) => a - b);
    let purged = 0;
    for (const window of windows) {
      if (purged >= PURGE_BATCH) break;
      const keys = await this.keys(names.doneFilter(window));
      let left = keys.length;
      const expired = await mapLimit(keys, READ_CONCURRENCY, async (key) => {
        const entry = names.parseDoneEntry(key);
        const txId = entry === undefined ? undefined : decodeToken(entry.txToken);
        if (entry === undefined || txId === undefined) return false;
        const read = await ctx.kvGet(names.runsBucket, names.runRecord(txId));
        const record = read === undefined ? undefined : decodeRecord(read.data);
        const endedAt = record === undefined ? undefined : endedAtOf(record);
        if (record !== undefined && (!isTerminalRunState(record.state) || (endedAt ?? Infinity) > cutoff)) {
          return false;
        }
        // The record only up to the revision read: a run written since (reopened) stays whole.
        if (read !== undefined) {
          const subject = names.kvSubject(names.runsBucket, names.runRecord(txId));
          if ((await ctx.purgeSubject(names.runsStream, subject, read.revision + 1)) === 0) return false;
        }
        await ctx.purgeSubject(names.runsStream, names.kvSubject(names.runsBucket, names.runMeta(txId)));
        await ctx.purgeSubject(names.runsStream, names.kvSubject(names.runsBucket, key));
        this.known.delete(txId);
        this.metas.delete(txId);
        left -= 1;
        return true;
      });
      purged += expired.filter(Boolean).length;
      // An old window left without runs leaves the directory (a writer adds it back if needed).
      if (left === 0 && window + 2 * width < cutoff) {
        await ctx.purgeSubject(
          names.runsStream,
          names.kvSubject(names.runsBucket, names.windowEntry(window)),
        );
        this.knownWindows.delete(window);
      }
    }
    return purged;
  }

  private assertOpen(): void {
    if (this.closed) throw new MultiAgentsError(ErrorCode.FailedPrecondition, 'NatsRunStore is closed');
  }
}

/**
 * A run's live timers after a transition at `version`: the previous ones it neither cancelled nor
 * scheduled again, plus the ones it scheduled. None once the run is finished (they are moot).
 */
function liveTimers(
  run: Run,
  previous: readonly LiveTimer[],
  transition: Transition,
  version: number,
): LiveTimer[] {
  if (isTerminalRunState(run.state)) return [];
  const replaced = new Set([...transition.cancel, ...transition.schedule.map((t) => t.id)]);
  return [
    ...previous.filter(([timerId]) => !replaced.has(timerId)),
    ...transition.schedule.map((t) => [t.id, t.dueAt, version] as const),
  ];
}

/** When a finished run ended, from its header. */
function endedAtOf(record: DecodedRunRecord): number | undefined {
  const header = JSON.parse(record.header) as { endedAt?: unknown; updatedAt?: unknown };
  const value = header.endedAt ?? header.updatedAt;
  return typeof value === 'number' ? value : undefined;
}

/** Live candidates and a window's done entries, one candidate per run, newest first. */
function merge(live: readonly Candidate[], done: readonly DoneEntryKey[]): Candidate[] {
  const byRun = new Map<string, Candidate>();
  for (const c of live) byRun.set(c.txToken, { ...c, done: [...c.done] });
  for (const d of done) {
    const existing = byRun.get(d.txToken);
    if (existing !== undefined) existing.done.push(d);
    else byRun.set(d.txToken, { createdAt: d.createdAt, txToken: d.txToken, live: false, done: [d] });
  }
  return [...byRun.values()].sort(compareNewestFirst);
}

function page(runs: Run[], last: { createdAt: number; txToken: string } | undefined): RunPage {
  return last === undefined ? { runs } : { runs, nextCursor: encodeListCursor(last.createdAt, last.txToken) };
}

/** Negative when `a` comes first newest first (it is newer, or equally new with a larger txId). */
function compareNewestFirst(
  a: { createdAt: number; txToken: string },
  b: { createdAt: number; txToken: string },
): number {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.txToken < b.txToken ? 1 : a.txToken > b.txToken ? -1 : 0;
}

function assertRun(run: Run): void {
  const problems: string[] = [];
  if (run === null || typeof run !== 'object') throw new ValidationError('run', ['must be an object']);
  if (typeof run.txId !== 'string' || run.txId === '') problems.push('txId must be a non-empty string');
  if (typeof run.workflowId !== 'string') problems.push('workflowId must be a string');
  if (typeof run.state !== 'string') problems.push('state must be a string');
  if (!Number.isSafeInteger(run.createdAt) || run.createdAt < 0)
    problems.push('createdAt must be an integer >= 0');
  if (problems.length > 0) throw new ValidationError('run', problems);
}

function tokenKeyOf({ createdAt, key }: { createdAt: number; key: string }): {
  createdAt: number;
  txToken: string;
} {
  return { createdAt, txToken: key };
}
