import { setImmediate as nextTurn, setTimeout as delay } from 'node:timers/promises';
import {
  SIGNATURE_HEADER,
  ErrorCode,
  EventType,
  Groups,
  MultiAgentsError,
  Topics,
  ValidationError,
  type Envelope,
  type StepCancelPayload,
  type ErrorInfo,
  type StepCommandPayload,
  type StepHeartbeatPayload,
  type StepProgressPayload,
  type StepResultPayload,
  type WorkerHeartbeatPayload,
} from '@multiagents/contracts';
import {
  DEFAULT_SUBSCRIBE_OPTIONS,
  DeliveryExtender,
  deepFreeze,
  EventLoopSlice,
  silentLogger,
  systemClock,
  uuidGenerator,
  type Clock,
  type Delivery,
  type EventBus,
  type IdGenerator,
  type LocalResultSink,
  type LocalSlot,
  type LocalWorkers,
  type Logger,
  type SubscribeOptions,
  type Subscription,
  type WorkerObserver,
  type WorkerRegistry,
} from '@multiagents/core';
import { AttemptControl } from './attempt-control';
import { WORKER_NAME_PATTERN, type WorkerDefinition } from './define-worker';
import { describeValue } from './describe-value';
import { parseStepCommand, type StepCommand } from './parse-step-command';
import { checkTimerDelay, isPositiveInteger } from './worker-options';
import { DEFAULT_PROGRESS_MAX_PER_SECOND, type ProgressReport } from './progress-throttle';
import {
  DEFAULT_HEARTBEAT_THROTTLE_MS,
  WorkerRunner,
  type AttemptOutcome,
  type CircuitStateName,
} from './worker-runner';

/** Bus settings a WorkerManager passes to every command subscription (group and consumer are its own). */
export type WorkerSubscribeOptions = Partial<Omit<SubscribeOptions, 'group' | 'consumer' | 'concurrency'>>;

/** Construction options of a {@link WorkerManager}. */
export interface WorkerManagerOptions {
  readonly bus: EventBus;
  /** The workers this manager hosts; names must be unique. */
  readonly workers: readonly WorkerDefinition<never, unknown>[];
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Ids of heartbeat envelopes (and of the manager, when `managerId` is not given). */
  readonly idGenerator?: IdGenerator;
  /** This replica's consumer name in the `workers` group: unique per process. Default: random. */
  readonly managerId?: string;
  readonly subscribe?: WorkerSubscribeOptions;
  /** Period of the `worker.heartbeat` announcements on `Topics.events`. */
  readonly heartbeatIntervalMs?: number;
  /** How long `close()` waits for handlers in flight before aborting them. */
  readonly drainTimeoutMs?: number;
  /** Least time between two `step.heartbeat`s published for one attempt. */
  readonly heartbeatThrottleMs?: number;
  /** Tracing and metrics hook in here: one scope per attempt (see `WorkerObserver`). */
  readonly observer?: WorkerObserver;
  /**
   * Where this replica announces itself (every `heartbeatIntervalMs`, forgotten after three
   * missed announcements): what `workers list` and the orchestrator's warnings about unhosted
   * workers read.
   */
  readonly registry?: WorkerRegistry;
  /** Free-form facts about this replica for operators (host, version…), shown by `workers list`. */
  readonly details?: Readonly<Record<string, string>>;
  /**
   * Most `step.progress` events published per attempt per second (`ctx.progress()` reports in
   * between are coalesced); 0 switches progress events off where nothing consumes them.
   */
  readonly progressMaxPerSecond?: number;
  /**
   * How long a finished attempt keeps trying to publish its result while the bus refuses it with
   * a retryable error (a broker restarting, a stream electing a new leader), backing off from 100
   * ms to 2 s, its command kept ours meanwhile; then the delivery fails and the command is
   * redelivered. Without it a failover longer than the command's redeliveries (5 × 1 s by
   * default) dead-lettered work that had been done. 0: one try.
   */
  readonly resultPublishRetryMs?: number;
}

/** Defaults of {@link WorkerManagerOptions}. */
export const DEFAULT_WORKER_MANAGER_OPTIONS = Object.freeze({
  heartbeatIntervalMs: 5_000,
  drainTimeoutMs: 30_000,
  heartbeatThrottleMs: DEFAULT_HEARTBEAT_THROTTLE_MS,
  progressMaxPerSecond: DEFAULT_PROGRESS_MAX_PER_SECOND,
  resultPublishRetryMs: 60_000,
});

/** First and longest wait between two tries of a result publish (see `resultPublishRetryMs`). */
/** Command ids one `step.cancel` notice may name (a run has at most this many attempts in flight in practice). */
const MAX_CANCELLED_PER_NOTICE = 1_000;
/** Characters of a notice's reason kept in the CANCELLED error. */
const MAX_CANCEL_REASON = 500;
/** First wait before listening for cancel notices again, after the bus refused a listener. */
const LISTEN_RETRY_MIN_MS = 1_000;
/** Longest wait between two tries to listen for cancel notices. */
const LISTEN_RETRY_MAX_MS = 30_000;
const RESULT_RETRY_FIRST_MS = 100;
const RESULT_RETRY_MAX_MS = 2_000;

/** One hosted worker as operators see it (served over gRPC as ListWorkers). */
export interface WorkerInfo {
  readonly name: string;
  /** Attempts in flight (running, or waiting for a slot). */
  readonly inFlight: number;
  readonly capacity: number;
  readonly circuit: CircuitStateName;
  /**
   * Handlers still running after their attempt ended (they ignored `ctx.signal` at a timeout,
   * cancel or drain): each holds one of the `capacity` slots until it settles.
   */
  readonly lingering: number;
}

/** Options of {@link WorkerManager.close}. */
export interface CloseOptions {
  /** Overrides the manager's `drainTimeoutMs` for this close; 0 aborts everything at once. */
  readonly drainTimeoutMs?: number;
}

/** Why an attempt's signal fired when the manager stopped waiting for it during close(). */
class DrainAbortedError extends MultiAgentsError {
  constructor(managerId: string) {
    super(
      ErrorCode.Cancelled,
      `worker-manager ${managerId} closed before the attempt finished; redelivering`,
      {
        retryable: true,
        details: { managerId },
      },
    );
  }
}

/** Why an attempt's signal fired when it was cancelled through {@link WorkerManager.cancel}. */
class AttemptCancelledError extends MultiAgentsError {
  constructor(commandId: string, reason: string) {
    super(ErrorCode.Cancelled, `attempt ${commandId} cancelled: ${reason}`, {
      retryable: false,
      details: { commandId },
    });
  }
}

type ManagerState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/** How an attempt that ran ended: what its result says. */
type FinishedOutcome = { kind: 'completed'; output: unknown } | { kind: 'failed'; error: ErrorInfo };

/**
 * Longest the commands handed over by the orchestrator of this process run on without letting
 * the event loop turn, in ms (see {@link EventLoopSlice}).
 */
export const LOCAL_DISPATCH_SLICE_MS = 10;

/** A local attempt has no delivery to keep visible. */
function extendNothing(): Promise<void> {
  return Promise.resolve();
}

/**
 * Hosts workers: consumes their `step.command` topics as one competing replica of the `workers`
 * group, runs each command through the worker's {@link WorkerRunner}, publishes a `step.result`
 * (then acknowledges the command), relays `step.heartbeat`s, and announces itself with
 * `worker.heartbeat`s. `close()` drains: handlers in flight may finish; those that do not within
 * `drainTimeoutMs` are aborted and their commands are left unacknowledged for another replica.
 * As the {@link LocalWorkers} of an orchestrator in the same process, it also runs the commands
 * that orchestrator hands over directly (eager dispatch), in the same slots.
 *
 * @example
 * const manager = new WorkerManager({ bus, workers: [reserve, release], logger });
 * await manager.start();
 * process.once('SIGTERM', () => void manager.close());
 */
export class WorkerManager implements LocalWorkers {
  /** This replica's consumer name. */
  readonly managerId: string;
  private readonly bus: EventBus;
  private readonly runners: ReadonlyMap<string, WorkerRunner>;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly idGenerator: IdGenerator;
  private readonly subscribeOptions: WorkerSubscribeOptions;
  private readonly heartbeatIntervalMs: number;
  /** How long a close (a drain) waits for the work in flight unless told otherwise, in ms. */
  readonly drainTimeoutMs: number;
  private readonly resultPublishRetryMs: number;
  /** Fires every attempt's signal when draining gives up. */
  private readonly drainAbort = new AbortController();
  private readonly observer: WorkerObserver | undefined;
  private readonly registry: WorkerRegistry | undefined;
  private readonly details: Readonly<Record<string, string>> | undefined;
  private readonly attempts = new Map<string, Set<AttemptControl>>();
  private readonly deliveriesInFlight = new Set<Promise<void>>();
  private subscriptions: Subscription[] = [];
  /** The listener of `step.cancel` notices (see {@link cancel}); undefined until one could be opened. */
  private cancelNotices: Subscription | undefined;
  /** The next attempt to open {@link cancelNotices}, while the bus refuses it. */
  private listenRetry: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Holds the deliveries whose attempts are running: kept visible to this replica only. */
  private readonly extender: DeliveryExtender;
  /** Slots held by {@link reserve} and not yet run or released, per worker. */
  private readonly held = new Map<string, number>();
  /** Slots held over all workers: a drain waits for each to be run or released. */
  private heldTotal = 0;
  /** Wakes a drain waiting for the last held slot. */
  private heldReleased: (() => void) | undefined;
  /** Where results go instead of the bus (the orchestrator of this process), if anywhere. */
  private resultSink: LocalResultSink | undefined;
  /** Lets the event loop turn between commands handed over without the bus (see `reserve`). */
  private readonly localSlice = new EventLoopSlice(LOCAL_DISPATCH_SLICE_MS);
  /** Commands handed over that wait for the loop's next turn, slots held (see `reserve`). */
  private nextTurnRuns: Array<() => void> = [];
  /** Commands handed over and waiting for the loop's next turn (see `reserve`), by command id. */
  private readonly queuedCommands = new Set<string>();
  private state: ManagerState = 'new';
  private closing: Promise<void> | undefined;

  constructor(options: WorkerManagerOptions) {
    this.observer = options.observer;
    this.registry = options.registry;
    this.details = options.details;
    const problems: string[] = [];
    if (typeof options.bus !== 'object' || options.bus === null) problems.push('bus is required');
    if (!Array.isArray(options.workers) || options.workers.length === 0) {
      problems.push('workers must list at least one worker');
    }
    const names = new Set<string>();
    const workers: readonly WorkerDefinition<never, unknown>[] = Array.isArray(options.workers)
      ? options.workers
      : [];
    for (const worker of workers) {
      if (names.has(worker.name)) problems.push(`worker ${JSON.stringify(worker.name)} is listed twice`);
      names.add(worker.name);
    }
    this.idGenerator = options.idGenerator ?? uuidGenerator;
    this.managerId = options.managerId ?? `worker-manager-${this.idGenerator.next()}`;
    if (typeof this.managerId !== 'string' || !WORKER_NAME_PATTERN.test(this.managerId)) {
      problems.push(
        `managerId must be a non-empty string of letters, digits and _ . : - (got ${describeValue(this.managerId)})`,
      );
    }
    const positive = (value: number | undefined, label: string, allowZero = false): void => {
      if (value === undefined) return;
      if (!(isPositiveInteger(value) || (allowZero && value === 0))) {
        problems.push(
          `${label} must be a ${allowZero ? 'non-negative' : 'positive'} integer (got ${describeValue(value)})`,
        );
      }
    };
    // Durations a timer waits: beyond what a timer honours it would fire at once.
    const delay = (value: number | undefined, label: string, allowZero = false): void => {
      if (value === undefined || !isPositiveInteger(value)) positive(value, label, allowZero);
      else checkTimerDelay(value, label, problems);
    };
    delay(options.heartbeatIntervalMs, 'heartbeatIntervalMs');
    delay(options.drainTimeoutMs, 'drainTimeoutMs', true);
    delay(options.heartbeatThrottleMs, 'heartbeatThrottleMs', true);
    positive(options.progressMaxPerSecond, 'progressMaxPerSecond', true);
    delay(options.resultPublishRetryMs, 'resultPublishRetryMs', true);
    delay(options.subscribe?.visibilityTimeoutMs, 'subscribe.visibilityTimeoutMs');
    positive(options.subscribe?.maxDeliveries, 'subscribe.maxDeliveries');
    delay(options.subscribe?.retryDelayMs, 'subscribe.retryDelayMs', true);
    if (problems.length > 0) throw new ValidationError('invalid WorkerManager options', problems);

    this.bus = options.bus;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({
      component: 'worker-manager',
      managerId: this.managerId,
    });
    this.subscribeOptions = options.subscribe ?? {};
    this.heartbeatIntervalMs =
      options.heartbeatIntervalMs ?? DEFAULT_WORKER_MANAGER_OPTIONS.heartbeatIntervalMs;
    this.drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_WORKER_MANAGER_OPTIONS.drainTimeoutMs;
    this.resultPublishRetryMs =
      options.resultPublishRetryMs ?? DEFAULT_WORKER_MANAGER_OPTIONS.resultPublishRetryMs;
    const visibilityTimeoutMs =
      this.subscribeOptions.visibilityTimeoutMs ?? DEFAULT_SUBSCRIBE_OPTIONS.visibilityTimeoutMs;
    this.extender = new DeliveryExtender(visibilityTimeoutMs, this.logger);
    const heartbeatThrottleMs =
      options.heartbeatThrottleMs ?? DEFAULT_WORKER_MANAGER_OPTIONS.heartbeatThrottleMs;
    const progressMaxPerSecond =
      options.progressMaxPerSecond ?? DEFAULT_WORKER_MANAGER_OPTIONS.progressMaxPerSecond;
    this.runners = new Map(
      options.workers.map((worker) => [
        worker.name,
        new WorkerRunner(worker, {
          logger: this.logger,
          clock: this.clock,
          heartbeatThrottleMs,
          progressMaxPerSecond,
        }),
      ]),
    );
  }

  /** Subscribes to every hosted worker's command topic and starts announcing this replica. */
  async start(): Promise<void> {
    if (this.state !== 'new')
      throw new Error(`WorkerManager ${this.managerId} cannot start: it is ${this.state}`);
    this.state = 'starting';
    await this.listenForCancels();
    // close() ran meanwhile (and closed what there was to close).
    if (this.state !== 'starting') return;
    try {
      for (const runner of this.runners.values()) {
        const options: SubscribeOptions = {
          ...this.subscribeOptions,
          group: Groups.workers,
          consumer: this.managerId,
          concurrency: runner.capacity,
        };
        const subscription = await this.bus.subscribe(Topics.command(runner.name), options, (delivery) =>
          this.track(runner, delivery),
        );
        if (this.state !== 'starting') {
          // close() ran while we were subscribing and has already drained the earlier subscriptions.
          await subscription.close();
          return;
        }
        this.subscriptions.push(subscription);
      }
    } catch (err) {
      // Half a manager would take commands for some workers and never for the others: undo it all.
      await Promise.allSettled(
        [...this.subscriptions, ...(this.cancelNotices ? [this.cancelNotices] : [])].map((s) => s.close()),
      );
      this.subscriptions = [];
      this.cancelNotices = undefined;
      clearTimeout(this.listenRetry);
      this.state = 'closed';
      throw err;
    }
    this.state = 'running';
    this.logger.info({ workers: [...this.runners.keys()] }, 'worker-manager started');
    void this.announce();
    this.heartbeatTimer = setInterval(() => void this.announce(), this.heartbeatIntervalMs);
    // Announcements must never keep a process alive that has nothing else to do.
    this.heartbeatTimer.unref();
  }

  /**
   * Drains and stops: no new commands are taken; attempts in flight get up to `drainTimeoutMs` to
   * finish (their results are published); then the rest are aborted (their signals fire), publish
   * nothing, and leave their commands unacknowledged so the broker redelivers them to another
   * replica. Idempotent. Does not close the bus, which the caller owns.
   *
   * What it waits for is attempts, not handlers: a handler that ignores its signal (aborted here,
   * or timed out or cancelled earlier) is not waited for, since it may never return; it keeps its
   * slot, can publish nothing more (its heartbeats and progress are dropped), and is logged and
   * counted in {@link lingering} until it settles. An attempt waiting for a slot such a handler
   * holds waits for it up to `drainTimeoutMs`, then is aborted like the others.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.closing ??= this.drain(options.drainTimeoutMs ?? this.drainTimeoutMs);
    return this.closing;
  }

  /**
   * Asks the attempts in flight for `commandId` to stop: their signals fire (`ctx.signal`), and
   * each ends when its handler does. One that throws then (or had not started) ends with a
   * non-retryable `CANCELLED` result, its `partialEffects` kept; one that completes anyway reports
   * its output, as the work was done. False when no such attempt runs here. The orchestrators ask
   * through `step.cancel` notices on `Topics.control`, which every replica hears.
   */
  cancel(commandId: string, reason = 'cancelled'): boolean {
    const controllers = this.attempts.get(commandId);
    if (controllers === undefined) return false;
    for (const controller of controllers) controller.interrupt(new AttemptCancelledError(commandId, reason));
    this.counters.cancelled += controllers.size;
    return true;
  }

  /**
   * Hears `step.cancel` notices. A listener the bus cannot open now (the broker away, a grant
   * missing) is tried again, waiting {@link LISTEN_RETRY_MIN_MS} doubling up to
   * {@link LISTEN_RETRY_MAX_MS}, until the manager closes; meanwhile the attempts a run no longer
   * wants run to their end, as they would without notices.
   */
  private async listenForCancels(failures = 0): Promise<void> {
    const live = (): boolean => this.state === 'starting' || this.state === 'running';
    if (!live()) return;
    try {
      const listener = await this.bus.listen(Topics.control, (envelope) => this.onCancelNotice(envelope));
      // close() ran meanwhile: it had no listener to close.
      if (!live()) return await listener.close();
      this.cancelNotices = listener;
      if (failures > 0) this.logger.info({ failures }, 'hearing cancel notices again');
    } catch (err) {
      const delayMs = Math.min(LISTEN_RETRY_MIN_MS * 2 ** failures, LISTEN_RETRY_MAX_MS);
      if (failures === 0)
        this.logger.warn(
          { err: err instanceof Error ? err.message : String(err), retryInMs: delayMs },
          'cannot hear cancel notices yet: attempts a run no longer wants run to their end meanwhile',
        );
      this.listenRetry = setTimeout(() => void this.listenForCancels(failures + 1), delayMs);
      this.listenRetry.unref();
    }
  }

  /**
   * A `step.cancel` notice: the attempts it names that run here are asked to stop. Only command
   * ids of the notice's own run count, at most {@link MAX_CANCELLED_PER_NOTICE}; anything else in
   * it is ignored (counted as refused).
   */
  private onCancelNotice(envelope: Envelope): void {
    if (envelope.type !== EventType.StepCancel) return;
    const payload = envelope.payload as Partial<StepCancelPayload> | null;
    const ids: unknown = payload?.commandIds;
    if (!Array.isArray(ids) || ids.length > MAX_CANCELLED_PER_NOTICE) {
      this.counters.refusedCancelNotices += 1;
      return;
    }
    const reason =
      typeof payload?.reason === 'string' ? payload.reason.slice(0, MAX_CANCEL_REASON) : 'cancelled';
    const ofRun = `${envelope.txId}:`;
    for (const id of ids) {
      if (typeof id === 'string' && id.startsWith(ofRun)) this.cancel(id, reason);
      else this.counters.refusedCancelNotices += 1;
    }
  }

  /**
   * Commands delivered to this replica, how many of them were deliveries again (another replica
   * died or stalled holding them, or a handler failed), how often a result was published again
   * after the bus refused it, and how many commands the orchestrator of this process handed over
   * without the bus (`local`, counted in `delivered` too): evidence for operators and tests.
   */
  readonly counters = {
    delivered: 0,
    redelivered: 0,
    resultPublishRetries: 0,
    local: 0,
    /** Attempts here asked to stop (a `step.cancel` notice, or {@link cancel}). */
    cancelled: 0,
    /** Command ids of `step.cancel` notices ignored: not their run's, not strings, too many. */
    refusedCancelNotices: 0,
  };

  /**
   * Attempts in flight (their outcome not yet known: running, or waiting for a slot), per hosted
   * worker; what `worker.heartbeat` and {@link workers} report.
   */
  inFlight(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const [name, runner] of this.runners) counts[name] = runner.inFlight;
    return counts;
  }

  /**
   * Handlers still running after their attempt ended (they ignored their signal at a timeout,
   * cancel or drain), per hosted worker: each still holds one of the worker's slots.
   */
  lingering(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const [name, runner] of this.runners) counts[name] = runner.lingering;
    return counts;
  }

  /** The hosted workers with their load, lingering handlers and circuit state (ListWorkers). */
  workers(): WorkerInfo[] {
    return [...this.runners.values()].map((runner) => ({
      name: runner.name,
      inFlight: runner.inFlight,
      capacity: runner.capacity,
      circuit: runner.circuitState,
      lingering: runner.lingering,
    }));
  }

  private async drain(drainTimeoutMs: number): Promise<void> {
    const wasRunning = this.state === 'running' || this.state === 'starting';
    this.state = 'closing';
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    // No longer a replica to count on: out of the registry at once (not three heartbeats later).
    if (wasRunning && this.registry) {
      await this.registry
        .withdraw(this.managerId)
        .catch((err: unknown) => this.logger.warn({ err }, 'withdrawing this replica failed'));
    }
    if (wasRunning)
      this.logger.info(
        { drainTimeoutMs, inFlight: this.totalInFlight(), lingering: this.totalLingering() },
        'worker-manager draining',
      );
    // Subscription.close() stops new deliveries and waits for the handlers in flight; our own set
    // covers adapters whose close() returns earlier.
    const subscriptionsClosed = Promise.allSettled(this.subscriptions.map((s) => s.close()));
    const drained = Promise.all([subscriptionsClosed, this.inFlightSettled()]);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), drainTimeoutMs);
    });
    const first = await Promise.race([drained.then(() => 'drained' as const), timedOut]);
    clearTimeout(timer);
    if (first === 'timeout') {
      this.logger.warn(
        { inFlight: this.totalInFlight() },
        'drain timeout passed: aborting attempts in flight',
      );
      const reason = new DrainAbortedError(this.managerId);
      this.drainAbort.abort(reason);
      for (const controllers of this.attempts.values()) {
        for (const controller of controllers) controller.abort(reason);
      }
      // The aborted attempts settle; a slot still held is not waited for (its commit may never
      // end): its command goes to the bus whenever it does.
      await Promise.allSettled([...this.deliveriesInFlight]);
    }
    // Cancel notices were heard while the attempts drained.
    clearTimeout(this.listenRetry);
    const notices = this.cancelNotices === undefined ? [] : [this.cancelNotices.close()];
    this.cancelNotices = undefined;
    for (const result of [...(await subscriptionsClosed), ...(await Promise.allSettled(notices))]) {
      if (result.status === 'rejected') {
        this.logger.warn({ err: result.reason as unknown }, 'closing a subscription failed');
      }
    }
    this.subscriptions = [];
    this.state = 'closed';
    if (!wasRunning) return;
    const lingering = this.totalLingering();
    // Not waited for (see close()): say they are there, as they run on in this process.
    if (lingering > 0)
      this.logger.warn(
        { lingering },
        'worker-manager closed with handlers still running past their attempts (they ignore ctx.signal)',
      );
    else this.logger.info({}, 'worker-manager closed');
  }

  private track(runner: WorkerRunner, delivery: Delivery): Promise<void> {
    const handled = this.handle(runner, delivery);
    // Kept for drain(); the bus gets the original promise, so a rejection still means "not acked".
    this.keepForDrain(
      handled.then(
        () => undefined,
        () => undefined,
      ),
    );
    return handled;
  }

  /** Runs `run` on the event loop's next turn, with the others queued in this one (drain waits). */
  private runNextTurn(run: () => void): void {
    this.nextTurnRuns.push(run);
    if (this.nextTurnRuns.length > 1) return;
    this.keepForDrain(
      nextTurn().then(() => {
        const runs = this.nextTurnRuns;
        this.nextTurnRuns = [];
        for (const queued of runs) queued();
      }),
    );
  }

  /**
   * Settles once no work kept for the drain is left and no slot is held for a command still being
   * committed (it is run or handed to the bus once its commit ends): work added meanwhile included.
   */
  private async inFlightSettled(): Promise<void> {
    for (;;) {
      if (this.deliveriesInFlight.size > 0) await Promise.allSettled([...this.deliveriesInFlight]);
      else if (this.heldTotal > 0) await new Promise<void>((resolve) => (this.heldReleased = resolve));
      else return;
    }
  }

  /** Work that `drain()` waits for, until it settles (`work` must not reject). */
  private keepForDrain(work: Promise<void>): void {
    this.deliveriesInFlight.add(work);
    void work.then(() => this.deliveriesInFlight.delete(work));
  }

  /** One delivery: resolving acknowledges the command, throwing leaves it for redelivery. */
  private async handle(runner: WorkerRunner, delivery: Delivery): Promise<void> {
    this.counters.delivered++;
    if (delivery.deliveryCount > 1) this.counters.redelivered++;
    // Throws PoisonMessageError for a malformed command: the bus dead-letters it and goes on.
    const command = parseStepCommand(delivery.envelope);
    const { commandId } = command.payload;
    if (command.payload.worker !== runner.name) {
      // Cannot happen by topic design (commands.<worker>); if a producer gets it wrong, tell the run
      // now rather than let it wait for a step timeout.
      this.logger.error(
        { commandId, worker: command.payload.worker, topic: delivery.topic },
        'command for a worker not hosted here',
      );
      await this.publishResult(command, runner.name, {
        kind: 'failed',
        error: {
          code: ErrorCode.UnknownWorker,
          message: `command ${commandId} names worker ${JSON.stringify(command.payload.worker)} but arrived on ${delivery.topic}`,
          retryable: false,
          details: { worker: command.payload.worker, topic: delivery.topic },
        },
      });
      return;
    }
    if (this.state !== 'running' && this.state !== 'starting') {
      // A delivery that raced with close(): leave it for a replica that is not shutting down.
      throw new DrainAbortedError(this.managerId);
    }

    // The visibility timeout exists to notice dead consumers, not long steps: while this process
    // lives and the attempt runs, keep the command ours (its own timeout bounds the attempt). One
    // manager-wide timer extends every delivery in flight (see `DeliveryExtender`).
    this.extender.hold(delivery);
    try {
      const outcome = await this.attempt(runner, command, {
        deliveryCount: delivery.deliveryCount,
        topic: delivery.topic,
        messageId: delivery.id,
        extend: () => delivery.extend(),
      });
      // Nothing is known about an aborted attempt: no result, and no ack, so another replica runs it.
      if (outcome.kind === 'aborted') throw outcome.reason;
      // The command is acknowledged once its result is applied or published.
      await this.finish(command, runner.name, outcome);
    } finally {
      this.extender.release(delivery);
    }
  }

  /** See {@link LocalWorkers.deliverResultsTo}. */
  deliverResultsTo(sink: LocalResultSink | undefined): void {
    this.resultSink = sink;
  }

  /**
   * Holds a free slot of `worker` for a command the orchestrator of this process is committing
   * (see {@link LocalWorkers}), or undefined: not hosted here, every slot taken (by attempts, by
   * handlers that outlived their attempt, or by other holds), or not running. A bus delivery that
   * finds the slots taken waits for one, so the worker's `concurrency` bounds both paths together.
   */
  reserve(worker: string): LocalSlot | undefined {
    if (this.state !== 'running') return undefined;
    const runner = this.runners.get(worker);
    if (runner === undefined) return undefined;
    const held = this.held.get(worker) ?? 0;
    // A handler that outlived its attempt still holds its slot.
    if (runner.inFlight + runner.lingering + held >= runner.capacity) return undefined;
    this.held.set(worker, held + 1);
    this.heldTotal += 1;
    let taken = false;
    const take = (): boolean => {
      if (taken) return false;
      taken = true;
      this.held.set(worker, (this.held.get(worker) ?? 1) - 1);
      this.heldTotal -= 1;
      if (this.heldTotal === 0) this.heldReleased?.();
      return true;
    };
    const runHeld = (command: Envelope<StepCommandPayload>, started?: () => void): void => {
      if (!take()) return;
      if (this.state === 'running') {
        started?.();
        this.trackLocal(runner, command);
      } else this.handOver(command);
    };
    return {
      // From a result to the next step's command everything goes on in promise callbacks, so
      // with workers that wait on no I/O whole batches of runs would go by without the event loop
      // turning (timers, sockets and the rest of the process held back for seconds): once it has
      // not turned for LOCAL_DISPATCH_SLICE_MS, a command waits for its next turn, slot held.
      // Once draining, a command goes on the bus at once (the drain waits for its publish).
      run: (command, started) => {
        if (taken) return;
        if (this.state === 'running' && this.localSlice.due()) {
          const { commandId } = command.payload;
          this.queuedCommands.add(commandId);
          this.runNextTurn(() => {
            this.queuedCommands.delete(commandId);
            runHeld(command, started);
          });
        } else runHeld(command, started);
      },
      release: () => void take(),
    };
  }

  /**
   * A command handed over while this manager closes: it goes on the bus for another replica (or
   * this one's successor); if even that fails, the orchestrator's redispatch deadline sends it.
   */
  private handOver(command: Envelope<StepCommandPayload>): void {
    // Kept for the drain: a close that returned first would close the bus under the publish.
    this.keepForDrain(
      this.bus
        .publish(Topics.command(command.payload.worker), [command])
        .catch((err: unknown) =>
          this.logger.warn(
            { err, commandId: command.payload.commandId },
            'handing a command to the bus failed',
          ),
        ),
    );
  }

  /** Whether an attempt of `commandId` runs here now, or is about to (queued for the next turn). */
  running(commandId: string): boolean {
    return this.attempts.has(commandId) || this.queuedCommands.has(commandId);
  }

  private trackLocal(runner: WorkerRunner, envelope: Envelope<StepCommandPayload>): void {
    this.keepForDrain(
      this.runLocal(runner, envelope).catch((err: unknown) =>
        // Its result is lost here; the orchestrator's redispatch deadline sends the command again.
        this.logger.warn(
          { err, commandId: envelope.payload.commandId },
          'a local attempt ended without a result',
        ),
      ),
    );
  }

  /**
   * A command handed over by the orchestrator of this process: run like a delivered one (the same
   * slots, observer, cancellation, drain and way back for its result). The envelope is frozen
   * first, as the in-process bus freezes messages: the handler gets its own copy of the input,
   * never the run's.
   */
  private async runLocal(runner: WorkerRunner, envelope: Envelope<StepCommandPayload>): Promise<void> {
    this.counters.delivered++;
    this.counters.local++;
    const command = parseStepCommand(deepFreeze(envelope));
    const outcome = await this.attempt(runner, command, {
      deliveryCount: 1,
      topic: Topics.command(runner.name),
      messageId: command.id,
    });
    if (outcome.kind === 'aborted') throw outcome.reason;
    await this.finish(command, runner.name, outcome);
  }

  /**
   * Hands a finished attempt's result to the orchestrator of this process when there is one (it
   * applies it without the bus), or publishes it on the bus: when there is none, or it could not
   * apply it (see {@link publishFinished}).
   */
  private async finish(command: StepCommand, worker: string, outcome: FinishedOutcome): Promise<void> {
    const sink = this.resultSink;
    if (sink !== undefined) {
      try {
        await sink(this.resultEnvelope(command, worker, outcome));
        return;
      } catch (err) {
        this.logger.warn(
          { err, commandId: command.payload.commandId },
          'the orchestrator of this process could not apply a result; publishing it',
        );
      }
    }
    await this.publishFinished(command, worker, outcome);
  }

  /**
   * Runs one attempt of `command` with the manager's bookkeeping: the attempt can be cancelled and
   * is aborted by a drain that gives up; observers see it. A cancelled attempt ends as a failed
   * one; any other abort is returned as is (its caller publishes nothing).
   */
  private async attempt(
    runner: WorkerRunner,
    command: StepCommand,
    via: { deliveryCount: number; topic: string; messageId: string; extend?: () => Promise<void> },
  ): Promise<FinishedOutcome | { kind: 'aborted'; reason: unknown }> {
    const { commandId } = command.payload;
    const controller = new AttemptControl();
    // A drain that gave up on attempts in flight aborted them all; one that slipped in after it
    // is aborted at once.
    if (this.drainAbort.signal.aborted) controller.abort(this.drainAbort.signal.reason);
    const controllers = this.attempts.get(commandId) ?? new Set<AttemptControl>();
    controllers.add(controller);
    this.attempts.set(commandId, controllers);

    if (command.payload.scheduleToStartTimeoutMs !== undefined) {
      // The step has a schedule-to-start deadline: say at once that a worker took the command.
      this.publishStepHeartbeat(command, { started: true }).catch((err: unknown) =>
        this.logger.warn({ err, commandId }, 'announcing a taken command failed'),
      );
    }
    const scope = this.observer?.attemptStarted?.(command, {
      deliveryCount: via.deliveryCount,
      managerId: this.managerId,
      topic: via.topic,
      group: Groups.workers,
      messageId: via.messageId,
    });
    let outcome: AttemptOutcome | undefined;
    try {
      const attempt = (): Promise<AttemptOutcome> =>
        runner.run(command, {
          control: controller,
          heartbeat: {
            extend: via.extend ?? extendNothing,
            publish: (details) => this.publishStepHeartbeat(command, details),
          },
          progress: { publish: (report) => this.publishStepProgress(command, report) },
          logFields: scope?.logFields,
          traceHeaders: scope?.traceHeaders,
        });
      outcome = await (scope ? scope.run(attempt) : attempt());
    } finally {
      controllers.delete(controller);
      if (controllers.size === 0) this.attempts.delete(commandId);
      scope?.end(
        outcome === undefined || outcome.kind === 'aborted'
          ? { kind: 'aborted' }
          : outcome.kind === 'completed'
            ? { kind: 'completed' }
            : { kind: 'failed', code: outcome.error.code, retryable: outcome.error.retryable },
      );
    }
    if (
      outcome.kind === 'failed' &&
      controller.interrupted &&
      controller.reason instanceof AttemptCancelledError
    ) {
      // It stopped as asked (or failed meanwhile): CANCELLED, with what the handler said and any
      // partial effects it declared, which its compensation must still undo.
      const { error } = outcome;
      const cancelled = controller.reason.toInfo();
      return {
        kind: 'failed',
        error: {
          ...cancelled,
          details: { ...cancelled.details, handlerError: { code: error.code, message: error.message } },
          ...(error.partialEffects ? { partialEffects: true } : {}),
        },
      };
    }
    if (outcome.kind !== 'aborted') return outcome;
    // Cancelled before its handler began: nothing was done.
    if (outcome.reason instanceof AttemptCancelledError)
      return { kind: 'failed', error: outcome.reason.toInfo() };
    return {
      kind: 'aborted',
      reason: outcome.reason instanceof Error ? outcome.reason : new DrainAbortedError(this.managerId),
    };
  }

  /**
   * Publishes a finished attempt's result. The work is done: while the bus refuses the result
   * with a retryable error, try again (see `resultPublishRetryMs`) rather than fail the delivery,
   * whose redeliveries a broker failover would use up and whose dead letter would throw the
   * work away. The delivery stays held by `extender` meanwhile. A close that gives up on the attempts
   * in flight stops the retries. Unlike the orchestrator and the monitor, which fail the delivery
   * with `retryAfterOutage` and let the bus wait, this keeps the delivery: a redelivered command
   * would run its attempt again (a paid model call, an effect) to produce a result it already has.
   */
  private async publishFinished(
    command: StepCommand,
    worker: string,
    outcome: FinishedOutcome,
  ): Promise<void> {
    // Real time, as the waits are: a test's manual clock must not make the retries endless.
    const giveUpAt = performance.now() + this.resultPublishRetryMs;
    for (let waitMs = RESULT_RETRY_FIRST_MS; ; waitMs = Math.min(waitMs * 2, RESULT_RETRY_MAX_MS)) {
      try {
        await this.publishResult(command, worker, outcome);
        return;
      } catch (err) {
        const retryable = err instanceof MultiAgentsError && err.retryable;
        if (!retryable || this.drainAbort.signal.aborted || performance.now() + waitMs > giveUpAt) throw err;
        this.counters.resultPublishRetries++;
        this.logger.warn(
          { err, commandId: command.payload.commandId, retryInMs: waitMs },
          'publishing a result failed; trying again',
        );
        const waited = await delay(waitMs, true, { signal: this.drainAbort.signal }).catch(() => false);
        if (!waited) throw err;
      }
    }
  }

  private async publishResult(command: StepCommand, worker: string, outcome: FinishedOutcome): Promise<void> {
    await this.bus.publish(Topics.results, [this.resultEnvelope(command, worker, outcome)]);
  }

  private resultEnvelope(
    command: StepCommand,
    worker: string,
    outcome: FinishedOutcome,
  ): Envelope<StepResultPayload> {
    const { commandId } = command.payload;
    const payload: StepResultPayload =
      outcome.kind === 'completed'
        ? { commandId, worker, ok: true, output: outcome.output }
        : { commandId, worker, ok: false, error: outcome.error };
    // A fixed id per command: a redelivered command's second result is recognisably the same one.
    return this.stepEnvelope(command, `${commandId}:result`, EventType.StepResult, payload);
  }

  private publishStepHeartbeat(command: StepCommand, details: unknown): Promise<void> {
    const { commandId } = command.payload;
    const payload: StepHeartbeatPayload = { commandId, ...(details === undefined ? {} : { details }) };
    return this.publishKept(Topics.results, [
      this.stepEnvelope(
        command,
        `${commandId}:heartbeat:${this.idGenerator.next()}`,
        EventType.StepHeartbeat,
        payload,
      ),
    ]);
  }

  /** Best effort, on the events topic: watchers read it; the orchestrator never sees it. */
  private publishStepProgress(command: StepCommand, report: ProgressReport): Promise<void> {
    const payload: StepProgressPayload = { commandId: command.payload.commandId, ...report };
    return this.publishKept(Topics.events, [
      this.stepEnvelope(
        command,
        `${command.payload.commandId}:progress:${this.idGenerator.next()}`,
        EventType.StepProgress,
        payload,
      ),
    ]);
  }

  /**
   * A publish a drain waits for: heartbeats and progress reports are sent on their own (the
   * "taken" heartbeat, the throttled progress), and a close that returned before them would close
   * the bus under them.
   */
  private publishKept(topic: string, envelopes: readonly Envelope[]): Promise<void> {
    const publishing = this.bus.publish(topic, envelopes);
    this.keepForDrain(publishing.then(noop, noop));
    return publishing;
  }

  private stepEnvelope<P>(command: StepCommand, id: string, type: EventType, payload: P): Envelope<P> {
    return {
      id,
      type,
      txId: command.txId,
      workflowId: command.workflowId,
      step: command.step,
      attempt: command.attempt,
      time: this.clock.now(),
      headers: this.replyHeaders(command),
      payload,
    };
  }

  /** The command's headers (trace context flows back), minus its signature: it signed the command, not this. */
  private replyHeaders(command: StepCommand): Readonly<Record<string, string>> {
    if (!(SIGNATURE_HEADER in command.headers)) return command.headers;
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(command.headers))
      if (key !== SIGNATURE_HEADER) headers[key] = value;
    return headers;
  }

  /**
   * Publishes one `worker.heartbeat` and refreshes this replica in the registry; failures are
   * logged (the next one comes soon). Both count the lingering handlers too (they hold slots no
   * attempt shows).
   */
  private async announce(): Promise<void> {
    const payload: WorkerHeartbeatPayload = {
      managerId: this.managerId,
      workers: [...this.runners.keys()],
      inFlight: this.totalInFlight(),
      lingering: this.totalLingering(),
    };
    if (this.registry) {
      let capacity = 0;
      for (const runner of this.runners.values()) capacity += runner.capacity;
      this.registry
        .announce(
          {
            managerId: this.managerId,
            workers: payload.workers,
            capacity,
            inFlight: payload.inFlight,
            lingering: payload.lingering ?? 0,
            seenAt: this.clock.now(),
            ...(this.details ? { details: this.details } : {}),
          },
          this.heartbeatIntervalMs * 3,
        )
        .catch((err: unknown) => this.logger.warn({ err }, 'announcing this replica failed'));
    }
    const envelope: Envelope<WorkerHeartbeatPayload> = {
      id: `${this.managerId}:heartbeat:${this.idGenerator.next()}`,
      type: EventType.WorkerHeartbeat,
      // Not about any run; '-' rather than '' because the envelope codec requires non-empty ids.
      txId: '-',
      workflowId: '-',
      time: this.clock.now(),
      headers: {},
      payload,
    };
    try {
      await this.bus.publish(Topics.events, [envelope]);
    } catch (err) {
      this.logger.warn({ err }, 'publishing worker.heartbeat failed');
    }
  }

  private totalInFlight(): number {
    let total = 0;
    for (const runner of this.runners.values()) total += runner.inFlight;
    return total;
  }

  private totalLingering(): number {
    let total = 0;
    for (const runner of this.runners.values()) total += runner.lingering;
    return total;
  }
}

function noop(): void {
  // nothing to do
}
