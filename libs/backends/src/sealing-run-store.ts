import {
  isSealedJson,
  openJson,
  rebuildContext,
  sealJson,
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

/**
 * Encryption at rest for any RunStore: the run's input, every step's output and the signal
 * payloads are sealed (AES-256-GCM under the payload key ring, bound to the run and the field)
 * before the inner store writes them, and opened when it reads them, so the broker's hashes, KV
 * values and snapshots hold ciphertext while the orchestrator works on plaintext in memory (CEL
 * conditions included). Ids, states and times stay readable: the stores index and expire by them.
 * Values written before encryption was turned on are read as they are.
 */
export class SealingRunStore implements RunStore {
  /** The inner store's bound on runs in progress, when it has one. */
  readonly admit?: () => Promise<() => void>;

  constructor(
    private readonly inner: RunStore,
    private readonly keys: KeyRing,
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
    const steps: Record<string, StepRecord> = {};
    for (const [name, record] of Object.entries(run.steps)) {
      steps[name] =
        record.output === undefined
          ? record
          : { ...record, output: sealJson(this.keys, record.output, `${run.txId}:step:${name}`) };
    }
    return {
      ...run,
      input: sealJson(this.keys, run.input, `${run.txId}:input`) as unknown as Run['input'],
      signals: sealJson(this.keys, run.signals, `${run.txId}:signals`) as unknown as Run['signals'],
      steps,
      // Never stored (rebuilt on read); nothing of it is left in the copy the store sees.
      context: {},
    };
  }

  private openStored(stored: StoredRun): StoredRun {
    return { ...stored, run: this.openRun(stored.run) };
  }

  private openRun(run: Run): Run {
    const open = (value: unknown, where: string): unknown =>
      isSealedJson(value) ? openJson(this.keys, value, `${run.txId}:${where}`) : value;
    const steps: Record<string, StepRecord> = {};
    for (const [name, record] of Object.entries(run.steps)) {
      steps[name] =
        record.output === undefined ? record : { ...record, output: open(record.output, `step:${name}`) };
    }
    const input = open(run.input, 'input') as Run['input'];
    return {
      ...run,
      input,
      signals: open(run.signals, 'signals') as Run['signals'],
      steps,
      context: rebuildContext(input, steps),
    };
  }
}
