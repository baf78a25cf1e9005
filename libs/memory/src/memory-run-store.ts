import {
  isTerminalRunState,
  RunNotFoundError,
  RunState,
  Topics,
  ValidationError,
  type Envelope,
} from '@multiagents/contracts';
import {
  decodeListCursor,
  encodeListCursor,
  systemClock,
  type Clock,
  type CreateRunResult,
  type RunFilter,
  type RunCounts,
  type RunPage,
  type RunRevision,
  type RunStore,
  type StoredRun,
  type Timer,
  type Transition,
} from '@multiagents/core';
import { FifoQueue } from './fifo-queue';
import type { MemoryEventBus } from './memory-event-bus';
import { SortedRunIndex, compareRunKeys, type RunKey } from './sorted-run-index';
import { TimerQueue } from './timer-queue';

/** Default of {@link MemoryRunStoreOptions.retainFinishedRuns}. */
export const DEFAULT_RETAIN_FINISHED_RUNS = 10_000;
/** Default of {@link MemoryRunStoreOptions.retainFinishedMs}: one hour. */
export const DEFAULT_RETAIN_FINISHED_MS = 60 * 60 * 1000;
/**
 * Default of {@link MemoryRunStoreOptions.maxActiveRuns} for a store that does not know the
 * workers: far more than their slots (16 per worker by default), so the slots stay full; beyond
 * them a run in progress only waits in the process's memory. The embedded mode knows its workers
 * and passes twice their slots instead (`defaultMaxActiveRuns` in @multiagents/embedded).
 */
export const DEFAULT_MAX_ACTIVE_RUNS = 1_000;

/** Options of {@link MemoryRunStore}. */
export interface MemoryRunStoreOptions {
  /** The bus transitions publish on, and whose deliveries they acknowledge in the same step. */
  readonly bus: MemoryEventBus;
  /** Ages finished runs for retention (default: the system clock). */
  readonly clock?: Clock;
  /**
   * Finished (terminal) runs kept, newest first; older ones leave the process, so memory stays
   * bounded however many runs finish (default {@link DEFAULT_RETAIN_FINISHED_RUNS}; 0 keeps none).
   */
  readonly retainFinishedRuns?: number;
  /** Longest a finished run is kept, in ms (default {@link DEFAULT_RETAIN_FINISHED_MS}). */
  readonly retainFinishedMs?: number;
  /**
   * Runs in progress (neither finished nor parked on a wait or sleep) beyond which starts wait
   * (`admit`) until one finishes or parks: the embedded bus is the process's memory, so a
   * producer that outruns the workers must be held back, not buffered without bound. Parked runs
   * do not count, so starts never wait on a signal only a later start would send. Only starts
   * are held: parked runs that resume (a signal, a timer) count again at once and may take the
   * runs in progress past it, and starts then wait until enough of them finish or park. A worker
   * that starts a run and waits for it to end holds its own run in progress meanwhile: at the
   * bound such starts wait for ever (use a wait step and a signal, or raise the bound). Default
   * {@link DEFAULT_MAX_ACTIVE_RUNS};
   * `Infinity` never holds a start.
   */
  readonly maxActiveRuns?: number;
}

/** One run as held: replaced on every write, never changed afterwards. */
interface Held {
  /** Fixed at create: a run's createdAt never changes, and the indexes are keyed on it. */
  readonly key: RunKey;
  readonly state: RunState;
  readonly workflowId: string;
  /** The version; the revision is the same number as a string. */
  readonly version: number;
  /**
   * A run in progress as given (handed out as is: runs are immutable values); a finished one as
   * its JSON in UTF-8 bytes, outside the V8 heap (see {@link MemoryRunStore}, retention).
   */
  readonly body: StoredRun | Buffer;
}

function isPacked(body: StoredRun | Buffer): body is Buffer {
  return body instanceof Buffer;
}

/** The run `held` holds, unpacked when it is a finished one. */
function storedOf(held: Held): StoredRun {
  const { body, version } = held;
  if (!isPacked(body)) return body;
  return freeze({
    run: JSON.parse(body.toString('utf8')) as StoredRun['run'],
    version,
    revision: String(version),
  });
}

/**
 * The embedded backend's {@link RunStore}, and the reference semantics every other backend is
 * checked against (one conformance suite): a transition is applied in one synchronous step (the
 * run, its messages on the {@link MemoryEventBus}, its timers and the acknowledgement of the
 * delivery that caused it), so nothing can interleave with it; compare-and-set on the version.
 * Finished runs are kept up to a count and an age, then forgotten.
 *
 * Ownership: the store keeps the `Run` objects it is given, without copying. The engine treats
 * runs as immutable values (every transition builds a new object), which is what makes that safe
 * and cheap; a caller that mutates a run after handing it over breaks the contract.
 *
 * @example
 * const bus = new MemoryEventBus();
 * const runs = new MemoryRunStore({ bus });
 * const orchestrator = new Orchestrator({ bus, runs, definitions: new MemoryDefinitionStore() });
 */
export class MemoryRunStore implements RunStore {
  private readonly bus: MemoryEventBus;
  private readonly clock: Clock;
  private readonly retainCount: number;
  private readonly retainMs: number;
  private readonly runs = new Map<string, Held>();
  private readonly all = new SortedRunIndex();
  private readonly byState = new Map<RunState, SortedRunIndex>();
  /** Finished runs held → the number of their finish (see `finishOrder`). */
  private readonly finished = new Map<string, number>();
  /**
   * The same runs in the order they finished, oldest first, with when: what retention drops
   * first. An entry whose run was reopened since no longer matches `finished` (its finish number)
   * and is skipped. (Not the Map's own order: a Map emptied at the front and iterated from the
   * front skips every deleted slot until it rehashes, which cost microseconds per finished run
   * once thousands had been dropped.)
   */
  private readonly finishOrder = new FifoQueue<{
    readonly txId: string;
    readonly finish: number;
    readonly endedAt: number;
  }>();
  private finishes = 0;
  private readonly timers = new TimerQueue();
  private readonly maxActive: number;
  /** Starts let in and not yet over (their run is created, or not, when they release). */
  private admitted = 0;
  /** Starts held by `admit`, oldest first. */
  private readonly admissions: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private closed = false;

  constructor(options: MemoryRunStoreOptions) {
    const problems: string[] = [];
    const count = options.retainFinishedRuns ?? DEFAULT_RETAIN_FINISHED_RUNS;
    const ms = options.retainFinishedMs ?? DEFAULT_RETAIN_FINISHED_MS;
    const maxActive = options.maxActiveRuns ?? DEFAULT_MAX_ACTIVE_RUNS;
    if (!Number.isSafeInteger(count) || count < 0)
      problems.push('retainFinishedRuns must be an integer >= 0');
    if (!(Number.isFinite(ms) && ms >= 0)) problems.push('retainFinishedMs must be a number >= 0');
    if (!((Number.isSafeInteger(maxActive) && maxActive >= 1) || maxActive === Number.POSITIVE_INFINITY))
      problems.push('maxActiveRuns must be an integer >= 1 or Infinity');
    if (problems.length > 0) throw new ValidationError('MemoryRunStore options', problems);
    this.bus = options.bus;
    this.clock = options.clock ?? systemClock;
    this.retainCount = count;
    this.retainMs = ms;
    this.maxActive = maxActive;
  }

  /** Runs held, finished ones included (diagnostics and retention tests). */
  get size(): number {
    return this.runs.size;
  }

  /** Runs in progress: neither finished nor parked on a wait or sleep (diagnostics and tests). */
  get activeRuns(): number {
    // `finished` holds exactly the finished runs still held.
    return this.runs.size - this.finished.size - (this.byState.get(RunState.Waiting)?.size ?? 0);
  }

  /** Starts waiting in `admit` for a run in progress to finish or park (diagnostics and tests). */
  get waitingStarts(): number {
    return this.admissions.length;
  }

  async admit(): Promise<() => void> {
    this.assertOpen();
    // Nobody overtakes a start already waiting.
    if (this.admissions.length > 0 || this.activeRuns + this.admitted >= this.maxActive) {
      // Counted in `admitted` by `admitWaiting` when let in.
      await new Promise<void>((resolve, reject) => this.admissions.push({ resolve, reject }));
    } else {
      this.admitted += 1;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.admitted -= 1;
      this.admitWaiting();
    };
  }

  async create(transition: Transition): Promise<CreateRunResult> {
    this.assertOpen();
    const run = transition.run;
    const existing = this.runs.get(run.txId);
    if (existing !== undefined) return { created: false, stored: storedOf(existing) };
    const stored = freeze({ run, version: 1, revision: '1' });
    const held: Held = {
      key: { createdAt: run.createdAt, txId: run.txId },
      state: run.state,
      workflowId: run.workflowId,
      version: 1,
      body: stored,
    };
    const publish = this.prepare(transition);
    this.runs.set(run.txId, held);
    this.all.insert(held.key);
    this.stateIndex(held.state).insert(held.key);
    this.settle(transition, publish);
    this.afterWrite(held, undefined);
    return { created: true, stored };
  }

  async commit(expected: RunRevision, transition: Transition): Promise<RunRevision | undefined> {
    this.assertOpen();
    const run = transition.run;
    const held = this.runs.get(run.txId);
    if (held === undefined) throw new RunNotFoundError(run.txId);
    if (String(held.version) !== expected.revision) return undefined;
    const version = held.version + 1;
    const next: Held = {
      key: held.key,
      state: run.state,
      workflowId: held.workflowId,
      version,
      body: freeze({ run, version, revision: String(version) }),
    };
    const publish = this.prepare(transition);
    if (next.state !== held.state) {
      this.stateIndex(held.state).remove(held.key);
      this.stateIndex(next.state).insert(held.key);
    }
    this.runs.set(run.txId, next);
    this.settle(transition, publish);
    this.afterWrite(next, held.state);
    this.admitWaiting();
    return { version, revision: String(version) };
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    this.assertOpen();
    const held = this.runs.get(txId);
    return held === undefined ? undefined : storedOf(held);
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    this.assertOpen();
    if (!Number.isInteger(limit) || limit < 1)
      throw new ValidationError('limit', ['must be an integer >= 1']);
    const after = cursor === undefined ? undefined : runKeyOf(decodeListCursor(cursor));
    const index = filter.state === undefined ? this.all : this.byState.get(filter.state);
    if (index === undefined) return { runs: [] };

    // Walk newest to oldest from the first key both below the cursor and inside createdBefore.
    let i = index.length - 1;
    if (after !== undefined) i = Math.min(i, index.partitionPoint((k) => compareRunKeys(k, after) < 0) - 1);
    const before = filter.createdBefore;
    if (before !== undefined) i = Math.min(i, index.partitionPoint((k) => k.createdAt <= before) - 1);

    const runs: StoredRun['run'][] = [];
    let last: RunKey | undefined;
    let more = false;
    for (; i >= 0; i -= 1) {
      const key = index.at(i) as RunKey;
      if (filter.createdAfter !== undefined && key.createdAt < filter.createdAfter) break;
      if (!index.has(key.txId)) continue;
      const held = this.runs.get(key.txId);
      if (held === undefined) continue;
      if (filter.workflowId !== undefined && held.workflowId !== filter.workflowId) continue;
      // One match past a full page proves there is a next page (no empty last page).
      if (runs.length === limit) {
        more = true;
        break;
      }
      runs.push(storedOf(held).run);
      last = key;
    }
    return more && last !== undefined
      ? { runs, nextCursor: encodeListCursor(last.createdAt, last.txId) }
      : { runs };
  }

  async countByState(): Promise<RunCounts> {
    this.assertOpen();
    const counts: Partial<Record<RunState, number>> = {};
    for (const [state, index] of this.byState) if (index.size > 0) counts[state] = index.size;
    return counts;
  }

  async claimDueTimers(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    this.assertOpen();
    return this.timers.claimDue(now, limit, leaseMs);
  }

  async completeTimers(timerIds: readonly string[]): Promise<void> {
    this.assertOpen();
    this.timers.complete(timerIds);
  }

  /** Further calls are refused and waiting starts rejected; the data stays (nothing to release). */
  async close(): Promise<void> {
    this.closed = true;
    for (const waiting of this.admissions.splice(0)) waiting.reject(closedError());
  }

  /** Lets waiting starts in, oldest first, while runs in progress and starts let in are under the bound. */
  private admitWaiting(): void {
    while (this.admissions.length > 0 && this.activeRuns + this.admitted < this.maxActive) {
      // Counted from now: its waiter only resumes later.
      this.admitted += 1;
      this.admissions.shift()?.resolve();
    }
  }

  /**
   * A transition's messages, encoded and ready to append, or undefined when it has none (most
   * embedded transitions: their commands run on local workers). Encoding is the only part of a
   * write that can fail, so it comes before anything changes; the run is written, then
   * {@link settle} does the rest, all in one synchronous step that nothing can interleave with.
   */
  private prepare(transition: Transition): (() => void) | undefined {
    if (transition.commands.length === 0 && transition.event === undefined) return undefined;
    const batches = new Map<string, Envelope[]>();
    for (const command of transition.commands) {
      const topic = Topics.command(command.payload.worker);
      const list = batches.get(topic);
      if (list) list.push(command);
      else batches.set(topic, [command]);
    }
    if (transition.event) batches.set(Topics.events, [transition.event]);
    return this.bus.prepare([...batches]);
  }

  /** What follows a transition's run write: its messages appended, its timers changed, its cause acknowledged. */
  private settle(transition: Transition, publish: (() => void) | undefined): void {
    publish?.();
    if (transition.cancel.length > 0) this.timers.remove(transition.cancel);
    if (transition.schedule.length > 0) this.timers.schedule(transition.schedule);
    if (transition.ack) this.bus.acknowledge(transition.ack);
  }

  /**
   * Retention: a run that just finished joins the finished list, and the oldest beyond the limits
   * go. `before` is the state it had (undefined for a new run): most writes move a run in
   * progress and touch nothing here.
   */
  private afterWrite(held: Held, before: RunState | undefined): void {
    const wasFinished = before !== undefined && isTerminalRunState(before);
    const txId = held.key.txId;
    if (!isTerminalRunState(held.state)) {
      // An operator reopened a finished run: it is live again.
      if (wasFinished) this.finished.delete(txId);
      return;
    }
    const now = this.clock.now();
    if (!wasFinished) {
      this.finishes += 1;
      this.finished.set(txId, this.finishes);
      this.finishOrder.push({ txId, finish: this.finishes, endedAt: now });
    }
    const oldestKept = now - this.retainMs;
    for (let oldest = this.finishOrder.peek(); oldest !== undefined; oldest = this.finishOrder.peek()) {
      const current = this.finished.get(oldest.txId) === oldest.finish;
      if (current && this.finished.size <= this.retainCount && oldest.endedAt >= oldestKept) break;
      this.finishOrder.shift();
      if (!current) continue;
      this.finished.delete(oldest.txId);
      this.forget(oldest.txId);
    }
    if (this.runs.get(txId) === held) this.pack(held);
  }

  /**
   * Keeps a finished run as its JSON in bytes: it is rarely read again, and thousands of them
   * kept as objects weigh on every major GC and on the heap V8 lets grow in between. The write is
   * done by now, so a run that cannot be serialised is kept as it is, not failed.
   */
  private pack(held: Held): void {
    if (isPacked(held.body)) return;
    let packed: Buffer;
    try {
      packed = Buffer.from(JSON.stringify(held.body.run), 'utf8');
    } catch {
      return;
    }
    this.runs.set(held.key.txId, { ...held, body: packed });
  }

  private forget(txId: string): void {
    const held = this.runs.get(txId);
    if (held === undefined) return;
    this.runs.delete(txId);
    this.all.remove(held.key);
    this.stateIndex(held.state).remove(held.key);
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
    if (this.closed) throw closedError();
  }
}

function closedError(): Error {
  return new Error('MemoryRunStore is closed');
}

function freeze(stored: StoredRun): StoredRun {
  return Object.freeze(stored);
}

function runKeyOf({ createdAt, key }: { createdAt: number; key: string }): RunKey {
  return { createdAt, txId: key };
}
