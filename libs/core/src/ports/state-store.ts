import type { Run, RunState, WorkflowDefinition } from '@multiagents/contracts';
import type { Effect, Timer } from './effects';

/** A run as stored: its version counts writes and guards compare-and-set. */
export interface StoredRun {
  readonly run: Run;
  readonly version: number;
  /** Effects written with some version and not yet marked done, oldest first. */
  readonly outbox: readonly OutboxEntry[];
}

/** One outbox entry: an effect and the version whose write produced it. */
export interface OutboxEntry {
  readonly version: number;
  readonly effect: Effect;
}

/** The result of creating a run. */
export type CreateRunResult =
  | { readonly created: true; readonly txId: string }
  /** The idempotency key was used before: `txId` is the run it started. */
  | { readonly created: false; readonly txId: string };

/** Filters for listing runs; all optional, combined with AND. */
export interface RunFilter {
  readonly state?: RunState;
  readonly workflowId?: string;
  /** Inclusive bounds on `createdAt`, in ms since the epoch. */
  readonly createdAfter?: number;
  readonly createdBefore?: number;
}

/** One page of runs, newest first. */
export interface RunPage {
  readonly runs: readonly Run[];
  /** Pass back to get the next page; absent on the last page. */
  readonly nextCursor?: string;
}

/** A run with effects still to carry out (found by outbox recovery). */
export interface PendingOutbox {
  readonly txId: string;
  readonly entries: readonly OutboxEntry[];
}

/**
 * Run state. Every change is a compare-and-set on the version, writing the state and its outbox
 * atomically: two orchestrators can never both apply a transition (SPEC §4).
 */
export interface StateStore {
  /**
   * Stores a new run at version 1 with its outbox. With an idempotency key that was used before,
   * stores nothing and returns the earlier run's txId.
   */
  create(run: Run, outbox: readonly Effect[], idempotencyKey?: string): Promise<CreateRunResult>;
  get(txId: string): Promise<StoredRun | undefined>;
  /**
   * Replaces the run if its stored version is still `expectedVersion`, appending `outbox` tagged
   * with the new version. Returns the new version, or undefined when another writer got there first.
   */
  compareAndSet(
    txId: string,
    expectedVersion: number,
    run: Run,
    outbox: readonly Effect[],
  ): Promise<number | undefined>;
  /** Drops outbox entries of this run written at `version` or before (their effects are done). */
  clearOutbox(txId: string, version: number): Promise<void>;
  /** Runs that still have outbox entries written before `olderThan` (ms since the epoch). */
  listPendingOutbox(olderThan: number, limit: number): Promise<PendingOutbox[]>;
  list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage>;
  close(): Promise<void>;
}

/** Durable timers that fire once across orchestrators. */
export interface TimerStore {
  /** Adds or replaces timers by id. */
  schedule(timers: readonly Timer[]): Promise<void>;
  cancel(timerIds: readonly string[]): Promise<void>;
  /**
   * Claims up to `limit` timers due at `now`; a claimed timer is hidden from other claimers until
   * `now + leaseMs`, then reappears unless `complete` removed it (a crashed claimer loses nothing).
   */
  claimDue(now: number, limit: number, leaseMs: number): Promise<Timer[]>;
  /** Removes fired timers. */
  complete(timerIds: readonly string[]): Promise<void>;
  /** The earliest due time, if any timer is scheduled (lets a poller sleep exactly long enough). */
  nextDueAt(): Promise<number | undefined>;
  close(): Promise<void>;
}

/** A registered definition's summary. */
export interface DefinitionSummary {
  readonly id: string;
  readonly latestVersion: number;
  readonly versions: readonly number[];
  readonly description?: string;
}

/** Registered workflow definitions; a stored version is immutable. */
export interface DefinitionStore {
  /**
   * Stores a definition. Returns false when the same id and version exist with the same content;
   * throws AlreadyExistsError when they exist with different content.
   */
  put(definition: WorkflowDefinition): Promise<boolean>;
  /** The given version, or the latest when `version` is omitted. */
  get(id: string, version?: number): Promise<WorkflowDefinition | undefined>;
  list(): Promise<DefinitionSummary[]>;
  close(): Promise<void>;
}
