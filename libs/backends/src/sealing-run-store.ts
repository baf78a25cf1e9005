import {
  isSealedJson,
  openJson,
  rebuildContext,
  sealedKeyId,
  sealJson,
  type AttemptRecord,
  type CompensationRecord,
  type ErrorInfo,
  type KeyRing,
  type Run,
  type StepRecord,
} from '@multiagents/contracts';
import type {
  CreateRunResult,
  RunFilter,
  RunPage,
  RunRevision,
  RunStore,
  StoredRun,
  Transition,
} from '@multiagents/core';
import type { RunCounts, Timer } from '@multiagents/core';
import { plaintextRefused, type SealingOptions } from './sealing-options';

/**
 * Encryption at rest for any RunStore: the run's input, every step's output, the signal payloads
 * and every error (the run's, each step's, each attempt's and compensation's: a worker's message
 * often quotes the data it choked on) are sealed (AES-256-GCM under the payload key ring, bound to
 * the run and the field) before the inner store writes them, and opened when it reads them, so
 * the broker's hashes, KV values and snapshots hold ciphertext while the orchestrator works on
 * plaintext in memory (CEL conditions included). Ids, states and times stay readable: the stores
 * index and expire by them. A value found in plaintext is refused (PAYLOAD_REJECTED), or read as
 * written before encryption was turned on with `acceptPlaintext` (and sealed when next written).
 */
export class SealingRunStore implements RunStore {
  /** The inner store's bound on runs in progress, when it has one. */
  readonly admit?: () => Promise<() => void>;
  /** What each value (step record, input, signals, error) was sealed into, and where. */
  private readonly sealedByValue = new WeakMap<
    object,
    { readonly place: string; readonly sealed: unknown }
  >();

  constructor(
    private readonly inner: RunStore,
    private readonly keys: KeyRing,
    private readonly options: SealingOptions = {},
  ) {
    const admit = inner.admit?.bind(inner);
    if (admit) this.admit = admit;
  }

  async create(transition: Transition): Promise<CreateRunResult> {
    const result = await this.inner.create(this.sealTransition(transition));
    // A new run is the one we were given; an existing one was read back sealed.
    return result.created
      ? { created: true, stored: { ...result.stored, run: transition.run } }
      : { created: false, stored: this.openStored(result.stored) };
  }

  commit(expected: RunRevision, transition: Transition): Promise<RunRevision | undefined> {
    return this.inner.commit(expected, this.sealTransition(transition));
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    const stored = await this.inner.get(txId);
    return stored === undefined ? undefined : this.openStored(stored);
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    const page = await this.inner.list(filter, limit, cursor);
    return { ...page, runs: page.runs.map((run) => this.openRun(run)) };
  }

  claimDueTimers(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    return this.inner.claimDueTimers(now, limit, leaseMs);
  }

  completeTimers(timerIds: readonly string[]): Promise<void> {
    return this.inner.completeTimers(timerIds);
  }

  countByState(): Promise<RunCounts> {
    return this.inner.countByState();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private sealTransition(transition: Transition): Transition {
    return { ...transition, run: this.sealRun(transition.run) };
  }

  private sealRun(run: Run): Run {
    const seal = (value: unknown, where: string): unknown =>
      sealJson(this.keys, value, `${run.txId}:${where}`);
    const steps: Record<string, StepRecord> = {};
    for (const [name, record] of Object.entries(run.steps)) {
      steps[name] = this.sealed(record, `${run.txId}:step:${name}`, () => {
        const sealed = mapRecordErrors(record, `step:${name}`, seal);
        return record.output === undefined
          ? sealed
          : { ...sealed, output: seal(record.output, `step:${name}`) };
      });
    }
    const sealedRun: Run = {
      ...run,
      input: this.sealed(run.input, `${run.txId}:input`, () => seal(run.input, 'input')) as Run['input'],
      signals: this.sealed(run.signals, `${run.txId}:signals`, () =>
        seal(run.signals, 'signals'),
      ) as Run['signals'],
      steps,
      // Never stored (rebuilt on read); nothing of it is left in the copy the store sees.
      context: {},
    };
    const error = run.error;
    if (error !== undefined) {
      sealedRun.error = this.sealed(error, `${run.txId}:error`, () => seal(error, 'error')) as ErrorInfo;
    }
    return sealedRun;
  }

  /**
   * The sealed form of `value` at `place`, made once per value: the engine replaces what a
   * transition changes and never mutates a value, so a step record (or input, signals, error) that
   * is the same object as at the last commit is sealed already. A transition then encrypts what it
   * changed, not every output of the run again, and an unchanged record is handed to the inner
   * store as the same object each time (the NATS store keeps encoded records by identity).
   */
  private sealed<R>(value: object, place: string, seal: () => R): R {
    const cached = this.sealedByValue.get(value);
    if (cached !== undefined && cached.place === place) return cached.sealed as R;
    const sealed = seal();
    this.remember(value, place, sealed);
    return sealed;
  }

  /**
   * Records that `value` at `place` is sealed as `sealed`: after a write, and after a read for
   * what the store held sealed with the current key (a run read back is not sealed again when
   * next written; a value written before encryption was turned on, or under a key since
   * replaced, is, once).
   */
  private remember(value: unknown, place: string, sealed: unknown): void {
    if (typeof value === 'object' && value !== null) this.sealedByValue.set(value, { place, sealed });
  }

  private openStored(stored: StoredRun): StoredRun {
    return { ...stored, run: this.openRun(stored.run) };
  }

  private openRun(run: Run): Run {
    /**
     * Whether `open` met, since it was last reset, a value stored in plaintext or sealed with a key
     * other than the current one: written again, such a value is sealed afresh (with the current
     * key), so live runs move to a new key as they go and an old key can be retired.
     */
    let reseal = false;
    const open = (value: unknown, where: string): unknown => {
      if (!isSealedJson(value)) {
        if (this.options.acceptPlaintext !== true) throw plaintextRefused(`${run.txId}:${where}`);
        reseal = true;
        return value;
      }
      if (!this.isCurrent(value)) reseal = true;
      return openJson(this.keys, value, `${run.txId}:${where}`);
    };
    const steps: Record<string, StepRecord> = {};
    for (const [name, record] of Object.entries(run.steps)) {
      reseal = false;
      const opened = mapRecordErrors(record, `step:${name}`, open);
      const step =
        record.output === undefined ? opened : { ...opened, output: open(record.output, `step:${name}`) };
      steps[name] = step;
      // All of it sealed with the current key: written again unchanged, it is the record as stored.
      if (step !== record && !reseal) this.remember(step, `${run.txId}:step:${name}`, record);
    }
    const input = open(run.input, 'input') as Run['input'];
    const signals = open(run.signals, 'signals') as Run['signals'];
    const openedRun: Run = { ...run, input, signals, steps, context: rebuildContext(input, steps) };
    if (this.isCurrent(run.input)) this.remember(input, `${run.txId}:input`, run.input);
    if (this.isCurrent(run.signals)) this.remember(signals, `${run.txId}:signals`, run.signals);
    const error = run.error;
    if (error !== undefined) {
      openedRun.error = open(error, 'error') as ErrorInfo;
      if (this.isCurrent(error)) this.remember(openedRun.error, `${run.txId}:error`, error);
    }
    return openedRun;
  }

  /** Whether `value` is sealed with the ring's current key. */
  private isCurrent(value: unknown): boolean {
    return isSealedJson(value) && sealedKeyId(value) === this.keys.currentKeyId;
  }
}

/** Seals or opens one error at `where` (relative to its run). */
type ErrorMapper = (error: unknown, where: string) => unknown;

/**
 * The step record with every error in it (the step's, each attempt's, the compensation's and its
 * attempts') passed through `map`, each under a place of its own; the record itself when it holds
 * none, so a run without failures is not copied.
 */
function mapRecordErrors(record: StepRecord, where: string, map: ErrorMapper): StepRecord {
  const attempts = mapAttemptErrors(record.attempts, where, map);
  const compensation =
    record.compensation && mapCompensationErrors(record.compensation, `${where}:undo`, map);
  if (record.error === undefined && attempts === record.attempts && compensation === record.compensation) {
    return record;
  }
  const copy: StepRecord = { ...record, attempts };
  if (record.error !== undefined) copy.error = map(record.error, `${where}:error`) as ErrorInfo;
  if (compensation !== undefined) copy.compensation = compensation;
  return copy;
}

function mapCompensationErrors(
  compensation: CompensationRecord,
  where: string,
  map: ErrorMapper,
): CompensationRecord {
  const attempts = mapAttemptErrors(compensation.attempts, where, map);
  if (compensation.error === undefined && attempts === compensation.attempts) return compensation;
  const copy: CompensationRecord = { ...compensation, attempts };
  if (compensation.error !== undefined) copy.error = map(compensation.error, `${where}:error`) as ErrorInfo;
  return copy;
}

/** The attempts with their errors mapped; the same array when none has one. */
function mapAttemptErrors(attempts: AttemptRecord[], where: string, map: ErrorMapper): AttemptRecord[] {
  if (!attempts.some((attempt) => attempt.error !== undefined)) return attempts;
  return attempts.map((attempt) =>
    attempt.error === undefined
      ? attempt
      : { ...attempt, error: map(attempt.error, `${where}:attempt:${attempt.attempt}:error`) as ErrorInfo },
  );
}
