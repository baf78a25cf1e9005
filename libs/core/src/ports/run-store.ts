import type {
  Envelope,
  Run,
  RunState,
  StepCommandPayload,
  TransitionEventPayload,
} from '@multiagents/contracts';
import type { Delivery } from './event-bus';
import type { RunCounts } from './monitoring';
import type { Timer } from './timer';

/** A run as stored, with what compare-and-set needs to write it again. */
export interface StoredRun {
  readonly run: Run;
  /** Committed transitions so far: 1 once created. Lifecycle event ids are `<txId>:v<version>`. */
  readonly version: number;
  /**
   * The store's compare-and-set token for exactly this write (opaque). Unlike the version it is
   * never reused: a broker that lost a write and took another one with the same version number
   * still refuses a decision made on the lost one.
   */
  readonly revision: string;
}

/** The version and revision a commit expects to replace. */
export type RunRevision = Pick<StoredRun, 'version' | 'revision'>;

/**
 * Everything one transition of one run produces. A store commits it as one atomic write where
 * the backend allows it (SPEC §4): the run's changed parts, the commands, the timer changes, the
 * lifecycle event and the acknowledgement of the message that caused it — all or nothing.
 */
export interface Transition {
  /** The run after the transition. */
  readonly run: Run;
  /** Steps whose records changed: the store writes these and the run's header, nothing else. */
  readonly changedSteps: readonly string[];
  /** `step.command` envelopes, each for `Topics.command(payload.worker)`. */
  readonly commands: readonly Envelope<StepCommandPayload>[];
  /** The `workflow.transitioned` event for `Topics.events`; absent when events are switched off. */
  readonly event?: Envelope<TransitionEventPayload>;
  /** Timers to add or replace by id. */
  readonly schedule: readonly Timer[];
  /** Ids of timers to remove. */
  readonly cancel: readonly string[];
  /**
   * The bus delivery this transition consumed. A store whose bus it came from acknowledges it in
   * the same atomic write (the bus then does not acknowledge it again); otherwise the bus
   * acknowledges it when the handler returns, after the commit.
   */
  readonly ack?: Delivery;
}

/** The result of {@link RunStore.create}. */
export type CreateRunResult =
  | { readonly created: true; readonly stored: StoredRun }
  /** A run with this txId exists already (the same idempotency key started it): nothing written. */
  | { readonly created: false; readonly stored: StoredRun };

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

/**
 * Runs, their timers, and the messages their transitions send, written together. Every change is
 * a compare-and-set on the run's revision: two orchestrators can never both apply a transition
 * (SPEC §4), and a stale writer is refused.
 *
 * Listing indexes change only when a run's state changes, never on every step.
 */
export interface RunStore {
  /**
   * Creates a run with its first transition (version 1), unless a run with its txId exists: then
   * nothing is written and the existing run is returned (idempotent starts derive the txId from
   * the idempotency key).
   */
  create(transition: Transition): Promise<CreateRunResult>;
  /**
   * Resolves when the store will take another run, with a release the caller calls once its start
   * is over, created or not. A store that bounds the runs in progress (the embedded one, whose
   * broker is the process's own memory) holds starts here while it is full, as a bounded queue
   * pushes back on its producers; stores without a bound leave it out. Rejects when the store
   * closes while a start waits.
   */
  admit?(): Promise<() => void>;
  /**
   * Commits a transition over `expected`. Returns the new version and revision, or undefined when
   * the stored run is no longer `expected` (another writer got there first). Throws
   * RunNotFoundError when the run does not exist.
   */
  commit(expected: RunRevision, transition: Transition): Promise<RunRevision | undefined>;
  get(txId: string): Promise<StoredRun | undefined>;
  list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage>;
  /**
   * Claims up to `limit` timers due at `now`; a claimed timer is hidden from other claimers until
   * `now + leaseMs`, then reappears unless a commit cancelled it or `completeTimers` removed it (a
   * crashed claimer loses nothing).
   */
  claimDueTimers(now: number, limit: number, leaseMs: number): Promise<Timer[]>;
  /**
   * Removes claimed timers that fired without a commit (their event changed nothing); a timer a
   * commit scheduled again since the claim stays (a deadline a heartbeat moved meanwhile).
   */
  completeTimers(timerIds: readonly string[]): Promise<void>;
  /** Runs per state, exact, from the listing indexes (cheap: no run is read). */
  countByState(): Promise<RunCounts>;
  close(): Promise<void>;
}
