import type { RunState, TransitionEventPayload } from '@multiagents/contracts';

/** One worker-manager replica as it announced itself (SPEC §5 `worker.heartbeat`). */
export interface WorkerManagerRecord {
  readonly managerId: string;
  /** The workers it hosts. */
  readonly workers: readonly string[];
  /** Attempts it may run at once, over all its workers. */
  readonly capacity: number;
  /** Attempts running when it last announced itself. */
  readonly inFlight: number;
  /**
   * Handlers still running past their attempt (timed out, cancelled, given up by a drain, their
   * signal ignored) when it last announced itself: each holds a slot. Absent from older replicas.
   */
  readonly lingering?: number;
  /** When it last announced itself (ms since the epoch). */
  readonly seenAt: number;
  /** Free-form facts for operators (host, version, pid…). */
  readonly details?: Readonly<Record<string, string>>;
}

/**
 * The live worker-manager replicas, shared by every process of a deployment: each replica
 * announces itself periodically with a time to live; one that stops announcing disappears. The
 * orchestrator answers `ListWorkers` and warns about definitions nobody hosts from it; the
 * event-monitor lists gone replicas too.
 */
export interface WorkerRegistry {
  /** Records (or refreshes) a replica, forgotten `ttlMs` after `record.seenAt` unless announced again. */
  announce(record: WorkerManagerRecord, ttlMs: number): Promise<void>;
  /** Removes a replica at once (a clean shutdown). */
  withdraw(managerId: string): Promise<void>;
  /** Every replica not yet forgotten, with its last announcement. */
  list(): Promise<WorkerManagerRecord[]>;
  close(): Promise<void>;
}

/** One entry of a run's timeline: a committed transition as the event-monitor received it. */
export interface TimelineEntry extends TransitionEventPayload {
  /** When the transition happened (the envelope's time). */
  readonly time: number;
  /** The run's workflow (the envelope's), so a timeline says whose it is. */
  readonly workflowId?: string;
  /**
   * Made by the event-monitor from the run's record when it answers a read, not from an event:
   * the events after the previous entry never reached it (its `events` are then empty).
   */
  readonly reconciled?: boolean;
}

/** What a timeline read may ask its caller (see {@link TimelineStore.get}). */
export interface TimelineReadOptions {
  /**
   * The version the run has reached, from the run store (undefined when the run is not there):
   * called only when the entries read do not show where the timeline ends, at most once a read.
   */
  readonly runVersion?: () => Promise<number | undefined>;
}

/**
 * Run timelines kept by the event-monitor (every transition of a run, in version order) and its
 * once-only marks, shared by every monitor replica.
 */
export interface TimelineStore {
  /**
   * Adds entries to a run's timeline (an entry whose version is already there is ignored, so a
   * redelivered event changes nothing); the timeline is kept `ttlMs` after its last change.
   */
  append(txId: string, entries: readonly TimelineEntry[], ttlMs: number): Promise<void>;
  /**
   * The run's timeline ordered by version, or undefined when nothing is known about the run. A
   * store that cannot see where a timeline of a run still going ends (versions may pass without an
   * event: a signal kept for a later wait step) asks `options.runVersion` instead of searching.
   */
  get(txId: string, options?: TimelineReadOptions): Promise<TimelineEntry[] | undefined>;
  /**
   * Takes `key` unless someone holds it, for `leaseMs`: a token naming this hold for the one
   * caller that took it, undefined for every other (two monitor replicas never both announce one
   * stuck point). A hold ends when its time runs out, whoever took it: a caller that dies holding
   * a short lease keeps the others off only that long, and the first to ask after it takes `key`.
   */
  markOnce(key: string, leaseMs: number): Promise<string | undefined>;
  /**
   * Makes the hold `token` (from {@link markOnce}) on `key` end `ttlMs` from now (a lease becomes
   * a mark for good once its work is done): true when that hold is still on; false, changing
   * nothing, when it has ended (its time ran out, and another caller may have taken `key` since).
   * Atomic: a caller whose hold ended never extends the hold of whoever took `key` after it.
   */
  extendMark(key: string, token: string, ttlMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** How one consumer group of one topic is doing (consumer lag, SPEC metrics). */
export interface GroupStats {
  readonly group: string;
  /** Delivered and not acknowledged yet. */
  readonly pending: number;
  /** In the topic and not delivered to the group yet (undefined when the broker cannot tell). */
  readonly lag?: number;
}

/** Figures of a topic for metrics and the monitor. */
export interface TopicStats {
  readonly topic: string;
  readonly groups: readonly GroupStats[];
  /** Dead letters the topic holds. */
  readonly deadLetters: number;
  /**
   * Dead letters ever added to the topic (replays and retention do not lower it): a counter that
   * survives restarts of every process but the broker's own data. Undefined when the broker cannot tell.
   */
  readonly deadLettersAdded?: number;
}

/** Runs per state, exact (the metrics-collector's `runs by state` gauge). */
export type RunCounts = Readonly<Partial<Record<RunState, number>>>;
