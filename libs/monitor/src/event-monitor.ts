import {
  ErrorCode,
  EventType,
  MultiAgentsError,
  RunNotFoundError,
  Topics,
  ValidationError,
  type Envelope,
  type Run,
  type RunState,
  decodeHeartbeat,
  decodeTransition,
  EventRejectReason,
  isTerminalRunState,
  eventRejectReasonOf,
  mergedCopy,
} from '@multiagents/contracts';
import {
  DEFAULT_SUBSCRIBE_OPTIONS,
  DeliveryExtender,
  OUTAGE_MAX_DELIVERIES,
  retryAfterOutage,
  silentLogger,
  systemClock,
  taskSteps,
  type Clock,
  type DeadLetter,
  type DefinitionStore,
  type Delivery,
  type EventBus,
  type Logger,
  type RunStore,
  type StoredRun,
  type SubscribeOptions,
  type Subscription,
  type TimelineEntry,
  type TimelineStore,
  type WorkerManagerRecord,
  type WorkerRegistry,
} from '@multiagents/core';
import { assessRun, retryDueAt, WATCHED_STATES, type Assessment } from './stuck-assessment';

/** The event-monitor's consumer group on `Topics.events`: its replicas compete in it. */
export const EVENT_MONITOR_GROUP = 'event-monitor';

/** Defaults of {@link EventMonitorOptions}. */
export const DEFAULT_EVENT_MONITOR_OPTIONS = {
  group: EVENT_MONITOR_GROUP,
  /** Events in hand at once; with batchDelayMs also the most one read takes. */
  concurrency: 256,
  /**
   * Timelines can be 100 ms late: the events are read in fewer, bigger batches (see
   * SubscribeOptions). WatchEvents streams are not delayed.
   */
  batchDelayMs: 100,
  /** Timelines are kept 7 days after their last event. */
  timelineRetentionMs: 7 * 24 * 60 * 60 * 1000,
  /** An event whose timeline write failed comes back after 0.5 s, then 1 s, 2 s… up to 30 s. */
  outageRetryBaseDelayMs: 250,
  /** A run that has not moved for 5 minutes is stuck. */
  stuckThresholdMs: 5 * 60_000,
  /** How often the watchdog looks at the live runs. */
  stuckScanIntervalMs: 10_000,
  /** Live runs read per page by the watchdog. */
  stuckScanPageSize: 500,
  /** How often the worker registry is read (to notice replicas that went silent). */
  workersPollIntervalMs: 5_000,
  /** How long a gone worker-manager stays listed. */
  goneWorkersRetentionMs: 60 * 60_000,
  /** Dead letters read per topic when the caller names no limit, and the most it may ask for. */
  deadLettersLimit: 100,
  maxDeadLettersLimit: 1_000,
} as const;

/**
 * How many watchdog scans the lease on a stuck point lasts: the replica that takes it publishes
 * `workflow.stuck` and only then makes its mark last (see {@link EventMonitor}); one killed in
 * between keeps the other replicas off the point that long at most, and the first scan of any
 * replica after it announces the point.
 */
export const STUCK_MARK_LEASE_SCANS = 3;
/**
 * The shortest lease on a stuck point, whatever the scan interval: room for a publish that is slow
 * (a broker electing a leader; the backends give up on a request after 5 s by default), which would
 * otherwise let a second replica announce the point too.
 */
export const MIN_STUCK_MARK_LEASE_MS = 30_000;

/** Options of {@link EventMonitor}. */
export interface EventMonitorOptions {
  readonly bus: EventBus;
  readonly runs: Pick<RunStore, 'list' | 'get'>;
  readonly definitions: Pick<DefinitionStore, 'list' | 'get'>;
  readonly registry: Pick<WorkerRegistry, 'list'>;
  readonly timelines: TimelineStore;
  /** This replica's consumer name in the group (unique per process). */
  readonly consumer: string;
  readonly group?: string;
  /** Subscription settings (visibility timeout, deliveries before a dead letter…). */
  readonly subscribe?: Partial<Omit<SubscribeOptions, 'group' | 'consumer'>>;
  /** How long a run's timeline is kept after its last event. */
  readonly timelineRetentionMs?: number;
  /**
   * First delay before an event whose timeline write failed (the store unreachable) is delivered
   * again; it doubles with each delivery, up to 30 s, for up to {@link OUTAGE_MAX_DELIVERIES}.
   */
  readonly outageRetryBaseDelayMs?: number;
  /** No progress for longer than this makes a run stuck (default for every workflow). */
  readonly stuckThresholdMs?: number;
  /** Thresholds of some workflows, by workflow id. */
  readonly stuckThresholdsMs?: Readonly<Record<string, number>>;
  readonly stuckScanIntervalMs?: number;
  readonly stuckScanPageSize?: number;
  readonly workersPollIntervalMs?: number;
  readonly goneWorkersRetentionMs?: number;
  readonly logger?: Logger;
  readonly clock?: Clock;
}

/** A run's timeline as the monitor answers it. */
export interface RunTimeline {
  readonly txId: string;
  /** The run's workflow ('' when no entry carries it). */
  readonly workflowId: string;
  readonly entries: readonly TimelineEntry[];
}

/** A run the watchdog found stuck. */
export interface StuckRunInfo {
  readonly txId: string;
  readonly workflowId: string;
  readonly state: RunState;
  /** When the run last moved (or its retry timer was due). */
  readonly lastProgressAt: number;
  readonly thresholdMs: number;
  /** When this replica first found it stuck at this point. */
  readonly detectedAt: number;
  /** Steps in flight when it stopped moving. */
  readonly steps: readonly string[];
  /** Its version when it stopped moving, from its timeline (0 when unknown). */
  readonly version: number;
}

/** A live run waiting for a retry's backoff timer, as the watchdog's last scan found it. */
export interface RetryingRunInfo {
  readonly txId: string;
  readonly workflowId: string;
  readonly state: RunState;
  /** The steps (or compensations) waiting to be tried again, and those still in flight. */
  readonly steps: readonly string[];
  /** When the run last changed (the failed attempt that scheduled the retry, or later). */
  readonly updatedAt: number;
}

/** A worker-manager replica as the monitor knows it: live, or gone silent. */
export interface MonitoredWorkerManager extends WorkerManagerRecord {
  readonly live: boolean;
  /**
   * Handlers it still ran past their attempts (they ignored their abort signal; each holds a
   * slot), from its registry record, else from its last `worker.heartbeat` this monitor received;
   * 0 from a worker-manager too old to count them, absent until one of them told.
   */
  readonly lingering?: number;
}

/** Which events a watcher wants (every field optional, combined with AND). */
export interface EventFilter {
  readonly workflowId?: string;
  readonly txId?: string;
}

/** The `workflow.stuck` payload the watchdog publishes. */
export interface StuckEventPayload {
  readonly reason: 'no_progress';
  readonly state: RunState;
  readonly lastProgressAt: number;
  readonly thresholdMs: number;
  readonly steps: readonly string[];
  readonly version: number;
}

/** Counters for `/stats`. */
export interface EventMonitorStats {
  readonly eventsHandled: number;
  readonly transitionsRecorded: number;
  /**
   * Timeline reads answered with an entry made from the run's record: the run was further on than
   * its timeline while this monitor's group had no event left to read or to finish.
   */
  readonly reconciledTimelineReads: number;
  readonly eventsRejected: number;
  readonly rejectedByReason: Readonly<Record<string, number>>;
  readonly stuckRuns: number;
  readonly stuckEventsPublished: number;
  readonly watchdogScans: number;
  /**
   * Runs the watchdog could not check (their timeline unreadable) or announce (the mark store or
   * the bus unreachable; tried again at the next scan): the scan went on past each.
   */
  readonly watchdogFailures: number;
  readonly watchers: number;
}

type Resolved = Required<
  Pick<
    EventMonitorOptions,
    | 'group'
    | 'timelineRetentionMs'
    | 'outageRetryBaseDelayMs'
    | 'stuckThresholdMs'
    | 'stuckScanIntervalMs'
    | 'stuckScanPageSize'
    | 'workersPollIntervalMs'
    | 'goneWorkersRetentionMs'
  >
>;

function resolve(options: EventMonitorOptions): Resolved {
  const d = DEFAULT_EVENT_MONITOR_OPTIONS;
  const resolved: Resolved = {
    group: options.group ?? d.group,
    timelineRetentionMs: options.timelineRetentionMs ?? d.timelineRetentionMs,
    outageRetryBaseDelayMs: options.outageRetryBaseDelayMs ?? d.outageRetryBaseDelayMs,
    stuckThresholdMs: options.stuckThresholdMs ?? d.stuckThresholdMs,
    stuckScanIntervalMs: options.stuckScanIntervalMs ?? d.stuckScanIntervalMs,
    stuckScanPageSize: options.stuckScanPageSize ?? d.stuckScanPageSize,
    workersPollIntervalMs: options.workersPollIntervalMs ?? d.workersPollIntervalMs,
    goneWorkersRetentionMs: options.goneWorkersRetentionMs ?? d.goneWorkersRetentionMs,
  };
  const problems: string[] = [];
  for (const [name, value] of Object.entries(resolved)) {
    if (name === 'group') continue;
    if (!Number.isSafeInteger(value) || (value as number) < 1)
      problems.push(`${name} must be a positive integer`);
  }
  if (typeof options.consumer !== 'string' || options.consumer.length === 0)
    problems.push('consumer must be a non-empty string');
  for (const [workflowId, value] of Object.entries(options.stuckThresholdsMs ?? {})) {
    if (!Number.isSafeInteger(value) || value < 1)
      problems.push(`stuck threshold of ${workflowId} must be a positive integer`);
  }
  if (problems.length > 0) throw new ValidationError('invalid EventMonitor options', problems);
  return resolved;
}

/**
 * The event-monitor's logic (the app only wires it and serves it). It consumes `Topics.events` in
 * its own consumer group (never taking anyone else's messages) and:
 *
 * - appends every committed transition to its run's timeline in the shared {@link TimelineStore},
 *   kept `timelineRetentionMs` after the run's last event; a redelivered event changes nothing;
 * - runs the stuck-run watchdog: every `stuckScanIntervalMs` it reads the live runs old enough to
 *   be stuck from the run store (not from the events, which the replicas share out between them,
 *   so every replica sees every run and a restarted replica misses none), and a run that has not
 *   moved for longer than its workflow's threshold while not waiting for a signal, a sleep or a
 *   retry timer is listed as stuck until it moves; `workflow.stuck` is published once per stuck
 *   point across every replica (a {@link TimelineStore.markOnce} on the run and the time it last
 *   moved, taken for a short lease and extended once published, so a replica killed in between
 *   holds the point up only until its lease runs out); the runs waiting for a retry are read when
 *   someone asks for them;
 * - lists, replays and discards dead letters through the bus port;
 * - lists worker-managers: the live ones from the shared registry, and those that went silent
 *   (listed as gone for `goneWorkersRetentionMs`);
 * - streams events to watchers: while anyone watches, this replica also tails the events
 *   ({@link EventBus.tail}: no group, nothing left on the broker when it stops or is killed), so
 *   a watcher sees every event, not only this replica's share.
 *
 * An event it cannot decode is dead-lettered at once (a `PoisonMessageError` with the reason) and
 * counted; the events behind it go on.
 *
 * @example
 * const monitor = new EventMonitor({ ...backend, consumer: 'em-1', stuckThresholdMs: 60_000 });
 * await monitor.start();
 * const timeline = await monitor.getTimeline(txId);
 */
export class EventMonitor {
  private readonly options: Resolved;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly stuck = new Map<string, StuckRunInfo>();
  /**
   * The retrying runs as last read (when someone asked), when, and in which generation: used while
   * younger than the scan interval and of the current generation; always the fallback of a failed read.
   */
  private retrying:
    { readonly at: number; readonly generation: number; readonly runs: RetryingRunInfo[] } | undefined;
  /** The read of the retrying runs under way, and the generation it belongs to. */
  private retryingScan:
    { readonly generation: number; readonly runs: Promise<RetryingRunInfo[]> } | undefined;
  /** Bumped by scanNow(): a read begun before it is not kept, nor joined. */
  private generation = 0;
  /** The smallest stuck threshold of any workflow: younger runs cannot be stuck. */
  private readonly minThresholdMs: number;
  /** How long this replica holds a stuck point before its `workflow.stuck` is out (see `announce`). */
  private readonly stuckLeaseMs: number;
  /**
   * The stuck points whose lease this replica holds and whose mark it has not made last yet (the
   * publish or the extension failed): by mark key, until done or the run moves.
   */
  private readonly owed = new Map<string, OwedStuckEvent>();
  private readonly workers = new Map<string, KnownWorkerManager>();
  private readonly watchers = new Set<{ filter: EventFilter; listener: (envelope: Envelope) => void }>();
  private readonly counts = {
    eventsHandled: 0,
    transitionsRecorded: 0,
    reconciledTimelineReads: 0,
    eventsRejected: 0,
    stuckEventsPublished: 0,
    watchdogScans: 0,
    watchdogFailures: 0,
  };
  private readonly rejected: Record<string, number> = Object.fromEntries(
    Object.values(EventRejectReason).map((reason) => [reason, 0]),
  );
  private subscription: Subscription | undefined;
  private watchSubscription: Promise<Subscription> | undefined;
  private scanTimer: NodeJS.Timeout | undefined;
  private workersTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private closed = false;
  /** Keeps the deliveries whose timeline writes are in flight ours. */
  private readonly extender: DeliveryExtender;

  constructor(private readonly deps: EventMonitorOptions) {
    this.options = resolve(deps);
    const visibilityTimeoutMs =
      deps.subscribe?.visibilityTimeoutMs ?? DEFAULT_SUBSCRIBE_OPTIONS.visibilityTimeoutMs;
    this.logger = (deps.logger ?? silentLogger).child({ component: 'event-monitor' });
    this.extender = new DeliveryExtender(visibilityTimeoutMs, this.logger);
    this.clock = deps.clock ?? systemClock;
    this.minThresholdMs = Math.min(
      this.options.stuckThresholdMs,
      ...Object.values(deps.stuckThresholdsMs ?? {}),
    );
    this.stuckLeaseMs = Math.max(
      MIN_STUCK_MARK_LEASE_MS,
      STUCK_MARK_LEASE_SCANS * this.options.stuckScanIntervalMs,
    );
  }

  /** The threshold every workflow without its own has. */
  get defaultStuckThresholdMs(): number {
    return this.options.stuckThresholdMs;
  }

  /** Consumes the events (from where the group left off) and starts the watchdog and the worker poll. */
  async start(): Promise<void> {
    this.subscription = await this.deps.bus.subscribe(
      Topics.events,
      {
        concurrency: DEFAULT_EVENT_MONITOR_OPTIONS.concurrency,
        batchDelayMs: DEFAULT_EVENT_MONITOR_OPTIONS.batchDelayMs,
        // An event is dead-lettered when it cannot be decoded, not because the timeline store was
        // briefly unreachable (a broker restart, a leader election): that is waited out.
        maxDeliveries: OUTAGE_MAX_DELIVERIES,
        ...this.deps.subscribe,
        group: this.options.group,
        consumer: this.deps.consumer,
      },
      (delivery) => this.handle(delivery),
    );
    if (this.closed) {
      await this.subscription.close();
      return;
    }
    await this.pollWorkers().catch((err: unknown) =>
      this.logger.warn({ err }, 'reading the worker registry failed'),
    );
    this.scanTimer = setInterval(() => void this.scanStuck(), this.options.stuckScanIntervalMs);
    this.scanTimer.unref();
    this.workersTimer = setInterval(
      () =>
        void this.pollWorkers().catch((err: unknown) =>
          this.logger.warn({ err }, 'reading the worker registry failed'),
        ),
      this.options.workersPollIntervalMs,
    );
    this.workersTimer.unref();
  }

  /** Stops consuming (the events in flight are acknowledged first) and ends every watch. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.scanTimer !== undefined) clearInterval(this.scanTimer);
    if (this.workersTimer !== undefined) clearInterval(this.workersTimer);
    this.watchers.clear();
    await this.subscription?.close();
    await this.watchSubscription?.then(
      (subscription) => subscription.close(),
      () => undefined,
    );
    await this.scanning;
    await this.retryingScan?.runs;
    this.extender.clear();
  }

  /** Counters for `/stats`. */
  get stats(): EventMonitorStats {
    return {
      ...this.counts,
      rejectedByReason: { ...this.rejected },
      stuckRuns: this.stuck.size,
      watchers: this.watchers.size,
    };
  }

  // ---- the API ------------------------------------------------------------------------------

  /** A run's timeline; RunNotFoundError (NOT_FOUND) when the monitor knows nothing of it. */
  async getTimeline(txId: string): Promise<RunTimeline> {
    if (typeof txId !== 'string' || txId.length === 0) {
      throw new ValidationError('GetTimeline', ['txId is required']);
    }
    // One read of the run serves the timeline store (where a live timeline ends) and the check.
    let read: Promise<StoredRun | undefined> | undefined;
    const readRun = (): Promise<StoredRun | undefined> => (read ??= this.deps.runs.get(txId));
    const stored = await this.timelineOf(txId, readRun);
    if (stored === undefined || stored.length === 0) throw new RunNotFoundError(txId);
    const entries = await this.reconcile(txId, stored, readRun);
    const workflowId = entries.find((entry) => entry.workflowId !== undefined)?.workflowId ?? '';
    return { txId, workflowId, entries };
  }

  /**
   * A timeline is built from events, and a broker can fail to deliver some: one was seen to stop
   * short of its run's last transitions after a NATS cluster node was killed. A timeline that does
   * not end in a final state is checked against the run store, the source of truth: when the run
   * is further on and this monitor's group has no event left to read or to finish (so none is
   * merely late), the answer gets an entry made from the run's record (`reconciled`), and the read
   * is counted and logged. The entry is not stored: an event that does arrive still lands.
   */
  private async reconcile(
    txId: string,
    entries: TimelineEntry[],
    readRun: () => Promise<StoredRun | undefined>,
  ): Promise<TimelineEntry[]> {
    if (lastBehind(entries, Number.POSITIVE_INFINITY) === undefined) return entries;
    try {
      const stored = await readRun();
      if (
        stored === undefined ||
        lastBehind(entries, stored.version) === undefined ||
        !(await this.eventsAllHandled())
      ) {
        return entries;
      }
      // The run's last events may have been handled while the run and the group were read: only
      // a timeline read after the group was found drained shows whether one is really missing.
      const again = (await this.timelineOf(txId, readRun)) ?? entries;
      const last = lastBehind(again, stored.version);
      if (last === undefined) return again;
      const { run } = stored;
      this.counts.reconciledTimelineReads += 1;
      this.logger.warn(
        { txId, timelineVersion: last.version, runVersion: stored.version, state: run.state },
        'timeline behind its run with no event left to handle: answered from the run store',
      );
      const entry: TimelineEntry = {
        version: stored.version,
        state: run.state,
        events: [],
        time: run.updatedAt,
        workflowId: run.workflowId,
        reconciled: true,
      };
      return [...again, entry];
    } catch (err) {
      this.logger.warn({ err, txId }, 'checking a timeline against its run failed');
      return entries;
    }
  }

  /** A run's timeline as stored; a store that cannot see where it ends asks the run (`readRun`). */
  private timelineOf(
    txId: string,
    readRun: () => Promise<StoredRun | undefined> = () => this.deps.runs.get(txId),
  ): Promise<TimelineEntry[] | undefined> {
    return this.deps.timelines.get(txId, { runVersion: async () => (await readRun())?.version });
  }

  /** True when this monitor's group has read and acknowledged every event the topic holds. */
  private async eventsAllHandled(): Promise<boolean> {
    const stats = await this.deps.bus.topicStats?.(Topics.events);
    const mine = stats?.groups.find((g) => g.group === this.options.group);
    return mine !== undefined && mine.pending === 0 && mine.lag === 0;
  }

  /** The workflow of a run the monitor has a timeline of (authorization of workflow-limited callers). */
  async workflowOf(txId: string): Promise<string | undefined> {
    const entries = await this.timelineOf(txId);
    return entries?.find((entry) => entry.workflowId !== undefined)?.workflowId;
  }

  /** The runs found stuck by the last watchdog scan, oldest progress first. */
  async listStuckRuns(filter: { readonly workflowId?: string } = {}): Promise<StuckRunInfo[]> {
    return [...this.stuck.values()]
      .filter((run) => !filter.workflowId || run.workflowId === filter.workflowId)
      .sort((a, b) => a.lastProgressAt - b.lastProgressAt || (a.txId < b.txId ? -1 : 1));
  }

  /**
   * The live runs waiting for a retry's backoff timer ("running", but retrying), most recently
   * changed first. Read from the run store when asked, at most once per `stuckScanIntervalMs`
   * (the watchdog reads only the runs old enough to be stuck): a full read of the live runs about
   * once per interval while someone looks (the dashboard's runs page asks on every view), none
   * otherwise. Never throws: when a read fails, the last list stays (see `retryingRuns`).
   */
  async listRetryingRuns(filter: { readonly workflowId?: string } = {}): Promise<RetryingRunInfo[]> {
    const runs = await this.retryingRuns();
    return runs.filter((run) => !filter.workflowId || run.workflowId === filter.workflowId);
  }

  /** Dead letters of `topic`, or of every topic the deployment uses (events, results, every worker's commands). */
  async listDeadLetters(topic?: string, limit?: number): Promise<DeadLetter[]> {
    const d = DEFAULT_EVENT_MONITOR_OPTIONS;
    const wanted =
      limit === undefined || limit <= 0 ? d.deadLettersLimit : Math.min(limit, d.maxDeadLettersLimit);
    const topics = topic ? [topic] : await this.knownTopics();
    const out: DeadLetter[] = [];
    for (const name of topics) {
      try {
        out.push(...(await this.deps.bus.listDeadLetters(name, wanted)));
      } catch (err) {
        // A topic the bus refuses (a name it cannot carry) has no dead letters.
        if (err instanceof MultiAgentsError && err.code === ErrorCode.InvalidArgument && !topic) continue;
        throw err;
      }
    }
    return out;
  }

  /** Publishes a dead letter again and removes it; NOT_FOUND when the topic holds no such letter. */
  replayDeadLetter(topic: string, id: string): Promise<void> {
    return this.onDeadLetter('ReplayDeadLetter', 'replayed', topic, id, () =>
      this.deps.bus.replayDeadLetter(topic, id),
    );
  }

  /** Deletes a dead letter for good (never published again); NOT_FOUND when the topic holds no such letter. */
  discardDeadLetter(topic: string, id: string): Promise<void> {
    return this.onDeadLetter('DiscardDeadLetter', 'discarded', topic, id, () =>
      this.deps.bus.discardDeadLetter(topic, id),
    );
  }

  /** Checks the arguments, acts on the dead letter, and says NOT_FOUND when the bus had none. */
  private async onDeadLetter(
    method: string,
    done: string,
    topic: string,
    id: string,
    act: () => Promise<boolean>,
  ): Promise<void> {
    const problems: string[] = [];
    if (typeof topic !== 'string' || topic.length === 0) problems.push('topic is required');
    if (typeof id !== 'string' || id.length === 0) problems.push('id is required');
    if (problems.length > 0) throw new ValidationError(method, problems);
    if (!(await act())) {
      throw new MultiAgentsError(ErrorCode.NotFound, `dead letter ${id} not found in topic ${topic}`, {
        retryable: false,
        details: { topic, id },
      });
    }
    this.logger.info({ topic, id }, `dead letter ${done}`);
  }

  /** Every worker-manager replica: the live ones (read now) and those gone silent, by id. */
  async listWorkers(): Promise<MonitoredWorkerManager[]> {
    await this.pollWorkers();
    return [...this.workers.values()]
      .map(({ record, goneAt }) => ({ ...record, live: goneAt === undefined }))
      .sort((a, b) => (a.managerId < b.managerId ? -1 : 1));
  }

  /**
   * Calls `listener` with every event matching `filter` from now on, until the returned function
   * is called. The first watcher opens this replica's tail of the events.
   */
  async watchEvents(filter: EventFilter, listener: (envelope: Envelope) => void): Promise<() => void> {
    if (this.closed)
      throw new MultiAgentsError(ErrorCode.Unavailable, 'the event-monitor is closing', { retryable: true });
    const watcher = { filter, listener };
    this.watchers.add(watcher);
    try {
      await this.openWatchSubscription();
    } catch (err) {
      this.watchers.delete(watcher);
      throw err;
    }
    return () => void this.watchers.delete(watcher);
  }

  /**
   * Runs one watchdog scan now (the timer does every `stuckScanIntervalMs`) and forgets the
   * retrying runs read so far (the next ask reads them again); resolves when done.
   */
  scanNow(): Promise<void> {
    this.generation += 1;
    return this.scanStuck();
  }

  private scanStuck(): Promise<void> {
    this.scanning ??= this.scan()
      .catch((err: unknown) => this.logger.warn({ err }, 'stuck-run scan failed'))
      .finally(() => {
        this.scanning = undefined;
      });
    return this.scanning;
  }

  /**
   * The retrying runs: the last read while it is younger than `stuckScanIntervalMs`, else a new
   * one (callers meanwhile share it). A read that fails (the store is unreachable) leaves the last
   * list in place for another interval, logged: a dashboard refreshing during an outage neither
   * fails nor starts a full read on every page.
   */
  private retryingRuns(): Promise<RetryingRunInfo[]> {
    const now = this.clock.now();
    const generation = this.generation;
    const last = this.retrying;
    if (last?.generation === generation && now - last.at < this.options.stuckScanIntervalMs)
      return Promise.resolve(last.runs);
    if (this.retryingScan?.generation === generation) return this.retryingScan.runs;
    const keep = (runs: RetryingRunInfo[]): RetryingRunInfo[] => {
      if (this.generation === generation) this.retrying = { at: now, generation, runs };
      return runs;
    };
    const runs = this.scanRetrying().then(keep, (err: unknown) => {
      this.logger.warn({ err }, 'reading the retrying runs failed; the last list stays');
      return keep(last?.runs ?? []);
    });
    const scan = { generation, runs };
    this.retryingScan = scan;
    void runs.finally(() => {
      if (this.retryingScan === scan) this.retryingScan = undefined;
    });
    return runs;
  }

  // ---- events -------------------------------------------------------------------------------

  private async handle(delivery: Delivery): Promise<void> {
    const envelope = delivery.envelope;
    this.counts.eventsHandled += 1;
    try {
      switch (envelope.type) {
        case EventType.WorkflowTransitioned: {
          const transition = decodeTransition(envelope);
          // A write the store is slow to answer (a broker electing a leader) keeps the delivery:
          // past the visibility timeout the bus would hand it out again, and past its deliveries
          // dead-letter it while this write still succeeds, leaving the timeline without it.
          this.extender.hold(delivery);
          try {
            await this.deps.timelines.append(
              envelope.txId,
              [mergedCopy(transition, { time: envelope.time, workflowId: envelope.workflowId })],
              this.options.timelineRetentionMs,
            );
          } finally {
            this.extender.release(delivery);
          }
          this.counts.transitionsRecorded += 1;
          // It moved: off the stuck list at once (the next scan would say so too).
          const stuck = this.stuck.get(envelope.txId);
          if (stuck !== undefined && transition.version > stuck.version) this.stuck.delete(envelope.txId);
          return;
        }
        case EventType.WorkerHeartbeat: {
          const heartbeat = decodeHeartbeat(envelope);
          const known = this.workers.get(heartbeat.managerId);
          if (known !== undefined && isNews(known, envelope.time)) {
            this.workers.set(heartbeat.managerId, {
              record: {
                ...known.record,
                workers: heartbeat.workers,
                inFlight: heartbeat.inFlight,
                // Absent from worker-managers older than the field: they count none.
                lingering: heartbeat.lingering ?? 0,
                seenAt: envelope.time,
              },
            });
          }
          return;
        }
        default:
          // workflow.stuck, step.progress and anything newer: only streamed to watchers.
          return;
      }
    } catch (err) {
      const reason = eventRejectReasonOf(err);
      if (reason !== undefined) {
        this.counts.eventsRejected += 1;
        this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
        this.logger.warn(
          { reason, err: (err as Error).message, txId: envelope.txId, envelopeId: envelope.id },
          'event dead-lettered: it cannot be decoded',
        );
      }
      throw retryAfterOutage(err, delivery.deliveryCount, this.options.outageRetryBaseDelayMs);
    }
  }

  private openWatchSubscription(): Promise<Subscription> {
    this.watchSubscription ??= this.deps.bus
      .tail(Topics.events, (envelope) => this.fanOut(envelope))
      .catch((err: unknown) => {
        this.watchSubscription = undefined;
        throw err;
      });
    return this.watchSubscription;
  }

  private fanOut(envelope: Envelope): void {
    for (const { filter, listener } of this.watchers) {
      if (filter.txId && envelope.txId !== filter.txId) continue;
      if (filter.workflowId && envelope.workflowId !== filter.workflowId) continue;
      try {
        listener(envelope);
      } catch (err) {
        this.logger.warn({ err }, 'an event watcher threw');
      }
    }
  }

  // ---- the watchdog -------------------------------------------------------------------------

  private thresholdOf(workflowId: string): number {
    const own = this.deps.stuckThresholdsMs;
    return own !== undefined && Object.hasOwn(own, workflowId)
      ? (own[workflowId] as number)
      : this.options.stuckThresholdMs;
  }

  private async scan(): Promise<void> {
    const now = this.clock.now();
    const found = new Map<string, StuckRunInfo>();
    // A run cannot have stood still for longer than it has existed: the store leaves out the runs
    // younger than the smallest threshold before reading them, so a scan under load costs the old
    // runs, not every run in flight.
    const done = await this.eachWatchedRun(now - this.minThresholdMs, async (run) => {
      const info = await this.checkSafely(run, now);
      if (info !== undefined) found.set(run.txId, info);
    });
    if (!done) return;
    // Runs no longer stuck (they moved or ended) leave the list; the others keep when they were found.
    this.stuck.clear();
    for (const [txId, info] of found) this.stuck.set(txId, info);
    // An event owed for a point the run has left is owed no more (it moved: it is not stuck there).
    const points = new Set([...found.values()].map(stuckMarkOf));
    for (const key of this.owed.keys()) if (!points.has(key)) this.owed.delete(key);
    this.counts.watchdogScans += 1;
  }

  /** Every run retrying now, most recently changed first: all the live runs, read. */
  private async scanRetrying(): Promise<RetryingRunInfo[]> {
    const retrying: RetryingRunInfo[] = [];
    const done = await this.eachWatchedRun(undefined, (run) => {
      const assessment = assessRun(run);
      if (assessment.kind !== 'retry-timer') return;
      retrying.push({
        txId: run.txId,
        workflowId: run.workflowId,
        state: run.state,
        steps: assessment.steps,
        updatedAt: run.updatedAt,
      });
    });
    if (!done) throw new Error('the event-monitor closed during the read');
    return retrying.sort((a, b) => b.updatedAt - a.updatedAt || (a.txId < b.txId ? -1 : 1));
  }

  /**
   * Calls `visit` on every run in a watched state created no later than `createdBefore`, page by
   * page; false when the monitor closed before the end.
   */
  private async eachWatchedRun(
    createdBefore: number | undefined,
    visit: (run: Run) => void | Promise<void>,
  ): Promise<boolean> {
    for (const state of WATCHED_STATES) {
      const filter = createdBefore === undefined ? { state } : { state, createdBefore };
      let cursor: string | undefined;
      do {
        if (this.closed) return false;
        const page = await this.deps.runs.list(filter, this.options.stuckScanPageSize, cursor);
        for (const run of page.runs) await visit(run);
        cursor = page.nextCursor;
      } while (cursor !== undefined);
    }
    return true;
  }

  /**
   * {@link check}, made safe for the scan: a run it fails on (its timeline unreadable, a record it
   * cannot read) is logged and counted, and the scan goes on with the next run, so one run
   * can never blind the watchdog to the others nor keep the ones that moved listed. The failed run
   * keeps what the last scan found of it unless it moved since (a blip does not unlist it).
   */
  private async checkSafely(run: Run, now: number): Promise<StuckRunInfo | undefined> {
    let assessment: Assessment | undefined;
    try {
      assessment = assessRun(run);
      return await this.check(run, assessment, now);
    } catch (err) {
      this.counts.watchdogFailures += 1;
      this.logger.warn({ err, txId: run.txId }, 'checking a run for the watchdog failed; the scan goes on');
      const previous = this.stuck.get(run.txId);
      const unmoved =
        assessment !== undefined &&
        assessment.kind !== 'not-watched' &&
        previous !== undefined &&
        assessment.lastProgressAt <= previous.lastProgressAt;
      return unmoved ? previous : undefined;
    }
  }

  private async check(run: Run, assessment: Assessment, now: number): Promise<StuckRunInfo | undefined> {
    if (assessment.kind === 'not-watched') return undefined;
    const thresholdMs = this.thresholdOf(run.workflowId);
    if (now - assessment.lastProgressAt <= thresholdMs) return undefined;
    // Past the threshold: the timeline tells the version, and when a retry timer was due.
    const timeline = (await this.timelineOf(run.txId)) ?? [];
    let lastProgressAt = assessment.lastProgressAt;
    if (assessment.kind === 'retry-timer') {
      const due = retryDueAt(timeline, assessment.retrying);
      // A backoff the timeline cannot date: waiting on a timer, so not stuck.
      if (due === undefined) return undefined;
      lastProgressAt = Math.max(lastProgressAt, due);
      if (now - lastProgressAt <= thresholdMs) return undefined;
    }
    const version = timeline[timeline.length - 1]?.version ?? 0;
    const previous = this.stuck.get(run.txId);
    const info: StuckRunInfo = {
      txId: run.txId,
      workflowId: run.workflowId,
      state: run.state,
      lastProgressAt,
      thresholdMs,
      detectedAt: previous?.lastProgressAt === lastProgressAt ? previous.detectedAt : now,
      steps: assessment.steps,
      version,
    };
    await this.announce(info, now);
    return info;
  }

  /**
   * Publishes `workflow.stuck` once per stuck point across every replica, in three moves:
   *
   * 1. a lease: the replica whose {@link TimelineStore.markOnce} on the run and the time it last
   *    moved wins holds the point for `stuckLeaseMs` ({@link STUCK_MARK_LEASE_SCANS} scans, at
   *    least {@link MIN_STUCK_MARK_LEASE_MS});
   * 2. the publish;
   * 3. the confirmation: {@link TimelineStore.extendMark} makes the mark last its full life.
   *
   * A replica killed before 3 (kill -9, out of memory) leaves only a lease: once it runs out, the
   * next scan of any replica takes the point and announces it. When the publish fails (a broker
   * blip) the event is owed: this replica renews its lease and tries again at its next scans while
   * the run stays stuck there. A lease that ran out before its confirmation (a publish slower than
   * the lease, or scans failing for longer) is not this replica's any more: the store refuses to
   * extend it, so a replica that took the point meanwhile keeps its own lease, and this one takes
   * the point again only if nobody has. So a point is announced twice only when a replica published
   * it and then lost its lease (killed, or too slow) before confirming: the envelope id names the
   * point (`<txId>:stuck:<lastProgressAt>`), so a consumer can drop the copy. A mark that could not
   * be taken is tried again at the next scan. Never throws: the run is listed as stuck whether or
   * not this succeeds.
   *
   * A confirmed mark is not extended again: a point is announced only within `timelineRetentionMs`
   * of its becoming stuck, and its mark, confirmed no earlier than that, lasts a threshold longer
   * (room for the replicas' clocks to differ), so a mark is still there whenever a replica may ask
   * for it, and a run stuck at one point for longer than a mark lasts is not announced a second time.
   */
  private async announce(info: StuckRunInfo, now: number): Promise<void> {
    const key = stuckMarkOf(info);
    const retentionMs = this.options.timelineRetentionMs;
    const markMs = retentionMs + info.thresholdMs;
    const leaseMs = Math.min(this.stuckLeaseMs, markMs);
    const { timelines } = this.deps;
    try {
      let owed = this.owed.get(key);
      // Trying a failed publish again: only while the lease is still this replica's (renewed, so
      // the others stay off while it tries).
      if (owed !== undefined && !owed.published && !(await timelines.extendMark(key, owed.token, leaseMs))) {
        this.owed.delete(key);
        owed = undefined;
      }
      if (owed === undefined) {
        if (now >= info.lastProgressAt + info.thresholdMs + retentionMs) return;
        const token = await timelines.markOnce(key, leaseMs);
        if (token === undefined) return;
        owed = { token, published: false };
        this.owed.set(key, owed);
      }
      if (!owed.published) {
        await this.publishStuck(info);
        owed.published = true;
      }
      if (!(await timelines.extendMark(key, owed.token, markMs))) {
        // The lease ran out before the confirmation: the mark is taken again for its full life
        // unless a replica took the point meanwhile (that one announces it too, under the same
        // envelope id, and keeps its lease: the store refused to extend it for this replica).
        const again = await timelines.markOnce(key, markMs);
        this.logger.warn(
          { txId: info.txId, retaken: again !== undefined },
          'the lease on a stuck point ran out before its workflow.stuck was confirmed',
        );
      }
      this.owed.delete(key);
    } catch (err) {
      this.counts.watchdogFailures += 1;
      this.logger.warn({ err, txId: info.txId }, 'announcing a stuck run failed; the next scan tries again');
    }
  }

  private async publishStuck(info: StuckRunInfo): Promise<void> {
    const payload: StuckEventPayload = {
      reason: 'no_progress',
      state: info.state,
      lastProgressAt: info.lastProgressAt,
      thresholdMs: info.thresholdMs,
      steps: info.steps,
      version: info.version,
    };
    const envelope: Envelope<StuckEventPayload> = {
      id: `${info.txId}:stuck:${info.lastProgressAt}`,
      type: EventType.WorkflowStuck,
      txId: info.txId,
      workflowId: info.workflowId,
      time: info.detectedAt,
      headers: {},
      payload,
    };
    await this.deps.bus.publish(Topics.events, [envelope]);
    this.counts.stuckEventsPublished += 1;
    this.logger.warn(
      {
        txId: info.txId,
        workflowId: info.workflowId,
        state: info.state,
        stuckForMs: info.detectedAt - info.lastProgressAt,
      },
      'run stuck: workflow.stuck published',
    );
  }

  // ---- workers and topics -------------------------------------------------------------------

  private async pollWorkers(): Promise<void> {
    const live = await this.deps.registry.list();
    const now = this.clock.now();
    const liveIds = new Set<string>();
    for (const record of live) {
      liveIds.add(record.managerId);
      // The registry's count when its record has one (read now, of every replica); else the last
      // heartbeat's this replica received (an older worker-manager's record has none).
      const heard = this.workers.get(record.managerId)?.record.lingering;
      this.workers.set(record.managerId, {
        record:
          record.lingering === undefined && heard !== undefined ? { ...record, lingering: heard } : record,
      });
    }
    for (const [managerId, known] of this.workers) {
      if (liveIds.has(managerId)) continue;
      if (known.goneAt === undefined) {
        this.workers.set(managerId, { ...known, goneAt: now });
        this.logger.info({ managerId }, 'worker-manager gone silent');
      } else if (now - known.goneAt > this.options.goneWorkersRetentionMs) {
        this.workers.delete(managerId);
      }
    }
  }

  private async knownTopics(): Promise<string[]> {
    const workers = new Set<string>();
    for (const { record } of this.workers.values()) for (const worker of record.workers) workers.add(worker);
    for (const summary of await this.deps.definitions.list()) {
      const definition = await this.deps.definitions.get(summary.id);
      if (definition === undefined) continue;
      for (const step of taskSteps(definition.steps)) {
        workers.add(step.worker);
        if (step.compensation) workers.add(step.compensation);
      }
    }
    return [Topics.events, Topics.results, ...[...workers].sort().map((worker) => Topics.command(worker))];
  }
}

/** A stuck point whose lease this replica holds: its token, and whether its event is out. */
interface OwedStuckEvent {
  readonly token: string;
  /** Published: only the extension of its mark is left to do. */
  published: boolean;
}

/**
 * A worker-manager as the monitor knows it: its last record (its lingering handlers as the
 * registry or its last heartbeat counted them), and when it was found gone silent.
 */
interface KnownWorkerManager {
  readonly record: WorkerManagerRecord;
  readonly goneAt?: number;
}

/**
 * True when a heartbeat sent at `time` is newer than what is known of its manager: not before its
 * last record and, for one found gone, after it was found gone. A heartbeat delivered late (sent
 * before the manager fell silent) neither revives it nor restarts how long it stays listed as gone.
 */
function isNews(known: KnownWorkerManager, time: number): boolean {
  return known.record.seenAt <= time && (known.goneAt === undefined || time > known.goneAt);
}

/** The mark of a stuck point: the run, and the time it last moved. */
function stuckMarkOf(info: Pick<StuckRunInfo, 'txId' | 'lastProgressAt'>): string {
  return `stuck:${info.txId}:${info.lastProgressAt}`;
}

/** The timeline's last entry when the run may be further on than it (not final, below `version`). */
function lastBehind(timeline: readonly TimelineEntry[], version: number): TimelineEntry | undefined {
  const last = timeline[timeline.length - 1];
  return last !== undefined && !isTerminalRunState(last.state) && last.version < version ? last : undefined;
}
