import {
  AlreadyExistsError,
  DefinitionNotFoundError,
  ErrorCode,
  EventType,
  FailedPreconditionError,
  Groups,
  isTerminalRunState,
  MultiAgentsError,
  PoisonMessageError,
  ResourceExhaustedError,
  RunNotFoundError,
  Topics,
  ValidationError,
  type Envelope,
  type ErrorInfo,
  type Run,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { compileWorkflow, type CompiledWorkflow } from '../definition/validate-definition';
import { createRun, decide, type EngineEvent, type OperatorEvent } from '../engine/saga-engine';
import { systemClock, type Clock } from '../ports/clock';
import type { Effect, Timer } from '../ports/effects';
import type { EventBus, Subscription } from '../ports/event-bus';
import { uuidGenerator, type IdGenerator } from '../ports/id-generator';
import { silentLogger, type Logger } from '../ports/logger';
import type {
  DefinitionStore,
  DefinitionSummary,
  RunFilter,
  RunPage,
  StateStore,
  TimerStore,
} from '../ports/state-store';
import { KeyedMutex } from './keyed-mutex';

/** What an orchestrator is built from. */
export interface OrchestratorOptions {
  readonly bus: EventBus;
  readonly store: StateStore;
  readonly timers: TimerStore;
  readonly definitions: DefinitionStore;
  readonly clock?: Clock;
  readonly ids?: IdGenerator;
  readonly logger?: Logger;
  /** This process's consumer name in the orchestrators' group. */
  readonly consumerName?: string;
  /** How often due timers are claimed; 0 disables the loop (tests call `fireDueTimers`). */
  readonly timerPollIntervalMs?: number;
  readonly timerBatchSize?: number;
  /** A claimed timer that was not completed fires again after this long (crashed claimer). */
  readonly timerLeaseMs?: number;
  /** How often outboxes left behind by a crashed writer are carried out; 0 disables. */
  readonly outboxSweepIntervalMs?: number;
  /** Outbox entries younger than this belong to a live writer and are left alone by the sweep. */
  readonly outboxGraceMs?: number;
  /** Results handled at once. */
  readonly resultConcurrency?: number;
  /** Deliveries of a result that keeps failing (store unreachable) before it is dead-lettered. */
  readonly resultMaxDeliveries?: number;
  /** First delay before such a result is delivered again; it doubles each time, up to 30 s. */
  readonly resultRetryBaseDelayMs?: number;
  /** A result an orchestrator took and did not finish (it crashed) goes to another after this long. */
  readonly resultVisibilityTimeoutMs?: number;
  /** Compare-and-set attempts before an event is handed back to the bus for redelivery. */
  readonly maxCasRetries?: number;
  /** Largest start input or signal payload, as JSON bytes. */
  readonly maxPayloadBytes?: number;
  /** Runs whose latest written version is kept in memory to skip a read per event (0: none). */
  readonly recentRunsCached?: number;
  /** When given, definitions may only name these workers. */
  readonly knownWorkers?: () => ReadonlySet<string> | undefined;
}

/** Defaults of {@link OrchestratorOptions}. */
export const DEFAULT_ORCHESTRATOR_OPTIONS: ResolvedDefaults = {
  timerPollIntervalMs: 50,
  timerBatchSize: 256,
  timerLeaseMs: 30_000,
  outboxSweepIntervalMs: 5_000,
  outboxGraceMs: 10_000,
  resultConcurrency: 64,
  maxCasRetries: 20,
  maxPayloadBytes: 256 * 1024,
  recentRunsCached: 10_000,
  resultMaxDeliveries: 60,
  resultRetryBaseDelayMs: 250,
};

type ResolvedDefaults = Required<
  Pick<
    OrchestratorOptions,
    | 'timerPollIntervalMs'
    | 'timerBatchSize'
    | 'timerLeaseMs'
    | 'outboxSweepIntervalMs'
    | 'outboxGraceMs'
    | 'resultConcurrency'
    | 'maxCasRetries'
    | 'maxPayloadBytes'
    | 'recentRunsCached'
    | 'resultMaxDeliveries'
    | 'resultRetryBaseDelayMs'
  >
>;

/** Options of {@link Orchestrator.startWorkflow}. */
export interface StartWorkflowOptions {
  /** Pin a version; the latest registered one by default. */
  readonly version?: number;
  /** The same key returns the same run and never starts a second one. */
  readonly idempotencyKey?: string;
  readonly traceHeaders?: Record<string, string>;
}

/** What {@link Orchestrator.startWorkflow} answers. */
export interface StartWorkflowResult {
  readonly txId: string;
  /** False when the idempotency key had started this run before. */
  readonly created: boolean;
}

/** Counters an operator (and the fault tests) care about. */
export interface OrchestratorStats {
  /** Events that changed nothing: duplicate or late results, stale timers, repeated signals. */
  ignoredEvents: number;
  /** Results for an attempt that was no longer current (SPEC §4: ignored and counted). */
  ignoredResults: number;
  /** Writes refused because another writer changed the run first (SPEC §9.4). */
  casConflicts: number;
  timersFired: number;
  outboxRecovered: number;
}

type RunListener = (run: Run) => void;

interface Versioned {
  readonly run: Run;
  readonly version: number;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseErrorInfo(value: unknown): ErrorInfo | undefined {
  if (!isPlainObject(value)) return undefined;
  const { code, message, retryable } = value;
  if (typeof code !== 'string' || typeof message !== 'string' || typeof retryable !== 'boolean')
    return undefined;
  return value as unknown as ErrorInfo;
}

/** Reads a result or heartbeat envelope into an engine event; throws PoisonMessageError on bad shape. */
function toEngineEvent(envelope: Envelope): EngineEvent {
  const payload = envelope.payload;
  if (!isPlainObject(payload) || typeof payload['commandId'] !== 'string' || !envelope.step) {
    throw new PoisonMessageError(`${envelope.type} ${envelope.id} has no step or commandId`);
  }
  const commandId = payload['commandId'];
  if (!commandId.startsWith(`${envelope.txId}:${envelope.step}:`)) {
    throw new PoisonMessageError(
      `${envelope.type} ${envelope.id}: commandId does not belong to its run and step`,
    );
  }
  if (envelope.type === EventType.StepHeartbeat) return { type: 'heartbeat', step: envelope.step, commandId };
  if (envelope.type !== EventType.StepResult) {
    throw new PoisonMessageError(`unexpected ${envelope.type} on the results topic`);
  }
  if (payload['ok'] === true) {
    return {
      type: 'result',
      step: envelope.step,
      commandId,
      outcome: { ok: true, output: payload['output'] },
    };
  }
  const error = parseErrorInfo(payload['error']);
  if (payload['ok'] !== false || !error) {
    throw new PoisonMessageError(`step.result ${envelope.id} is neither a success nor a well-formed failure`);
  }
  return { type: 'result', step: envelope.step, commandId, outcome: { ok: false, error } };
}

/**
 * The shell around the pure engine: load, decide, compare-and-set, carry out effects. It consumes
 * results, fires durable timers, and on start (and periodically) carries out outboxes a crashed
 * writer left behind. Several orchestrators may run at once: compare-and-set decides.
 *
 * @example
 * const orchestrator = new Orchestrator({ bus, store, timers, definitions });
 * await orchestrator.start();
 * await orchestrator.registerWorkflow(definition);
 * const { txId } = await orchestrator.startWorkflow('order_processing', { orderId: 'o-1' });
 * const run = await orchestrator.waitForTerminal(txId);
 */
export class Orchestrator {
  readonly stats: OrchestratorStats = {
    ignoredEvents: 0,
    ignoredResults: 0,
    casConflicts: 0,
    timersFired: 0,
    outboxRecovered: 0,
  };
  private readonly clock: Clock;
  private readonly ids: IdGenerator;
  private readonly logger: Logger;
  private readonly options: OrchestratorOptions & ResolvedDefaults;
  private readonly compiled = new Map<string, Promise<CompiledWorkflow>>();
  private readonly mutex = new KeyedMutex();
  private readonly listeners = new Set<RunListener>();
  private readonly recent = new Map<string, Versioned>();
  /** waitForTerminal callers by txId: a map, so many waiters cost O(1) per change. */
  private readonly waiters = new Map<string, Set<RunListener>>();
  private readonly intervals: NodeJS.Timeout[] = [];
  private subscription: Subscription | undefined;
  private firing: Promise<number> | undefined;
  private sweeping: Promise<number> | undefined;
  private closed = false;

  constructor(options: OrchestratorOptions) {
    this.options = { ...DEFAULT_ORCHESTRATOR_OPTIONS, ...options };
    this.clock = options.clock ?? systemClock;
    this.ids = options.ids ?? uuidGenerator;
    this.logger = (options.logger ?? silentLogger).child({ component: 'orchestrator' });
  }

  /** Carries out what a crashed writer left in the outbox, then consumes results and fires timers. */
  async start(): Promise<void> {
    const recovered = await this.recoverOutbox(0);
    if (recovered > 0) this.logger.info({ runs: recovered }, 'outbox recovered');
    this.subscription = await this.options.bus.subscribe(
      Topics.results,
      {
        group: Groups.orchestrators,
        consumer: this.options.consumerName ?? `orchestrator-${this.ids.next()}`,
        concurrency: this.options.resultConcurrency,
        // A result is dead-lettered only when it cannot be handled; a store that is briefly
        // unreachable (broker restart, leader election) is waited out with growing delays.
        maxDeliveries: this.options.resultMaxDeliveries,
        ...(this.options.resultVisibilityTimeoutMs === undefined
          ? {}
          : { visibilityTimeoutMs: this.options.resultVisibilityTimeoutMs }),
      },
      async (delivery) => {
        try {
          await this.handleResult(delivery.envelope);
        } catch (err) {
          if (err instanceof MultiAgentsError && !err.retryable) throw err;
          const retryAfterMs = Math.min(
            30_000,
            this.options.resultRetryBaseDelayMs * 2 ** Math.min(delivery.deliveryCount, 10),
          );
          throw Object.assign(err instanceof Error ? err : new Error(String(err)), { retryAfterMs });
        }
      },
    );
    if (this.options.timerPollIntervalMs > 0) {
      this.every(this.options.timerPollIntervalMs, () => this.fireDueTimers());
    }
    if (this.options.outboxSweepIntervalMs > 0) {
      this.every(this.options.outboxSweepIntervalMs, () => this.recoverOutbox(this.options.outboxGraceMs));
    }
  }

  /** Stops consuming and firing; waits for the work in flight. */
  async close(): Promise<void> {
    this.closed = true;
    for (const interval of this.intervals) clearInterval(interval);
    await this.subscription?.close();
    await this.firing;
    await this.sweeping;
  }

  /**
   * Validates and stores a definition. Returns false when this exact version was registered
   * before; throws ValidationError (every problem listed) or AlreadyExistsError.
   */
  async registerWorkflow(definition: unknown): Promise<boolean> {
    const knownWorkers = this.options.knownWorkers?.();
    const compiled = compileWorkflow(definition, knownWorkers ? { knownWorkers } : {});
    return this.options.definitions.put(compiled.definition);
  }

  /** Starts a run; once this resolves the run is durable. */
  async startWorkflow(
    workflowId: string,
    input: unknown,
    options: StartWorkflowOptions = {},
  ): Promise<StartWorkflowResult> {
    if (!isPlainObject(input))
      throw new ValidationError('invalid start input', ['input must be a JSON object']);
    const size = jsonBytes(input);
    if (size > this.options.maxPayloadBytes) {
      throw new ResourceExhaustedError(
        `input is ${size} bytes, over the limit of ${this.options.maxPayloadBytes}`,
      );
    }
    const definition = await this.options.definitions.get(workflowId, options.version);
    if (!definition) throw new DefinitionNotFoundError(workflowId, options.version);
    const workflow = await this.workflow(definition.id, definition.version, definition);
    const now = this.clock.now();
    const run = createRun({
      txId: this.ids.next(),
      workflow: definition,
      input,
      now,
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
      ...(options.traceHeaders === undefined ? {} : { traceHeaders: options.traceHeaders }),
    });
    const decision = decide(workflow, run, { type: 'start' }, now);
    const created = await this.options.store.create(decision.run, decision.effects, options.idempotencyKey);
    if (!created.created) {
      const existing = await this.options.store.get(created.txId);
      if (
        existing &&
        (existing.run.workflowId !== workflowId ||
          JSON.stringify(existing.run.input) !== JSON.stringify(input))
      ) {
        throw new AlreadyExistsError(`idempotency key ${options.idempotencyKey} started a different run`, {
          txId: created.txId,
        });
      }
      return { txId: created.txId, created: false };
    }
    // Under the run's lock: a result that races in must not see (and repeat) this outbox half-done.
    await this.mutex.run(decision.run.txId, async () => {
      if (await this.carryOut(decision.run.txId, 1, decision.effects)) this.remember(decision.run, 1);
    });
    this.notify(decision.run);
    return { txId: decision.run.txId, created: true };
  }

  /** The run, or RunNotFoundError. */
  async getRun(txId: string): Promise<Run> {
    const stored = await this.options.store.get(txId);
    if (!stored) throw new RunNotFoundError(txId);
    return stored.run;
  }

  /** Runs matching `filter`, newest first. */
  listRuns(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    return this.options.store.list(filter, limit, cursor);
  }

  /** The definition, or DefinitionNotFoundError. */
  async getDefinition(id: string, version?: number): Promise<WorkflowDefinition> {
    const definition = await this.options.definitions.get(id, version);
    if (!definition) throw new DefinitionNotFoundError(id, version);
    return definition;
  }

  /** Every registered definition id with its versions (the definitions store's list). */
  listDefinitions(): Promise<DefinitionSummary[]> {
    return this.options.definitions.list();
  }

  /** Delivers a signal; one that arrives before its wait step is kept. */
  async signal(txId: string, name: string, payload: unknown = null): Promise<Run> {
    const size = jsonBytes(payload);
    if (size > this.options.maxPayloadBytes) {
      throw new ResourceExhaustedError(
        `signal payload is ${size} bytes, over the limit of ${this.options.maxPayloadBytes}`,
      );
    }
    return this.userEvent(txId, { type: 'signal', name, payload });
  }

  /** Cancels a run: steps in flight finish, then completed steps are compensated. */
  cancel(txId: string, reason?: string): Promise<Run> {
    return this.userEvent(txId, { type: 'cancel', ...(reason === undefined ? {} : { reason }) });
  }

  /**
   * Operator action on a `failed` run: runs the failed `step` again with a fresh attempt series
   * (attempt numbers go on, the retry budget starts over), and whatever the failure stopped starts
   * again; on a `compensation_failed` run, `step` names the failed compensation, which is retried
   * the same way. NOT_FOUND for an unknown run or step; FAILED_PRECONDITION for a run in another
   * state or a step that is not the failed one.
   */
  retryStep(txId: string, step: string): Promise<Run> {
    return this.operatorEvent(txId, { type: 'retry_step', step });
  }

  /**
   * Operator action on a `failed` run: marks the failed `step` skipped, records `output` for it
   * (merged into the context like a result) and goes on after it; on a `compensation_failed` run,
   * `step` names the failed compensation, which is skipped (no output) while unwinding goes on.
   * Errors as {@link retryStep}.
   */
  async skipStep(txId: string, step: string, output?: unknown): Promise<Run> {
    if (output !== undefined) {
      const size = jsonBytes(output);
      if (size > this.options.maxPayloadBytes) {
        throw new ResourceExhaustedError(
          `output is ${size} bytes, over the limit of ${this.options.maxPayloadBytes}`,
        );
      }
    }
    return this.operatorEvent(txId, { type: 'skip_step', step, ...(output === undefined ? {} : { output }) });
  }

  /**
   * Operator action on a `compensation_failed` run: retries its failed compensation with a fresh
   * attempt series (`skip: true`: skips it) and goes on undoing what is left. FAILED_PRECONDITION
   * for a run in any other state.
   */
  resumeCompensation(txId: string, options: { skip?: boolean } = {}): Promise<Run> {
    return this.operatorEvent(txId, {
      type: 'resume_compensation',
      ...(options.skip === undefined ? {} : { skip: options.skip }),
    });
  }

  /** Calls `listener` with every run this process writes. Returns an unsubscribe function. */
  onRunChanged(listener: RunListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the run once it is terminal. Sees changes written by this process at once; with
   * `pollIntervalMs` it also polls the store (for runs other orchestrators drive).
   */
  waitForTerminal(txId: string, options: { timeoutMs?: number; pollIntervalMs?: number } = {}): Promise<Run> {
    return new Promise<Run>((resolve, reject) => {
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const finish = (run: Run | undefined, error?: Error): void => {
        if (settled) return;
        settled = true;
        const waiters = this.waiters.get(txId);
        waiters?.delete(onRun);
        if (waiters?.size === 0) this.waiters.delete(txId);
        for (const t of timers) clearTimeout(t);
        if (run) resolve(run);
        else reject(error ?? new Error('no run'));
      };
      const onRun = (run: Run): void => finish(run);
      const waiters = this.waiters.get(txId) ?? new Set<RunListener>();
      waiters.add(onRun);
      this.waiters.set(txId, waiters);
      const check = (): void => {
        this.getRun(txId).then(
          (run) => {
            if (isTerminalRunState(run.state)) finish(run);
            else if (options.pollIntervalMs) timers.push(setTimeout(check, options.pollIntervalMs));
          },
          (err: unknown) => finish(undefined, err as Error),
        );
      };
      check();
      if (options.timeoutMs !== undefined) {
        const timeoutMs = options.timeoutMs;
        timers.push(
          setTimeout(
            () => finish(undefined, new Error(`run ${txId} not terminal after ${timeoutMs} ms`)),
            timeoutMs,
          ),
        );
      }
    });
  }

  /** Claims due timers and feeds them to their runs; returns how many fired. */
  async fireDueTimers(): Promise<number> {
    if (this.firing) return this.firing;
    this.firing = this.fireBatch().finally(() => (this.firing = undefined));
    return this.firing;
  }

  /**
   * Carries out outbox entries older than `graceMs` (0: all of them). A writer that crashed between
   * its compare-and-set and its publish left them; repeating an effect is safe.
   */
  async recoverOutbox(graceMs: number): Promise<number> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = this.sweep(graceMs).finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  // ---- internals ----------------------------------------------------------------------------

  private async sweep(graceMs: number): Promise<number> {
    let total = 0;
    for (;;) {
      // At start (grace 0) everything pending is ours to carry out, however recent.
      const olderThan = graceMs <= 0 ? Number.MAX_SAFE_INTEGER : this.clock.now() - graceMs;
      const pending = await this.options.store.listPendingOutbox(olderThan, 256);
      let failed = false;
      for (const { txId, entries } of pending) {
        const version = Math.max(...entries.map((e) => e.version));
        const done = await this.carryOut(
          txId,
          version,
          entries.map((e) => e.effect),
        );
        if (done) this.stats.outboxRecovered++;
        failed ||= !done;
      }
      total += pending.length;
      // A failure (bus down) leaves entries in place: stop here rather than list them again.
      if (failed || pending.length < 256 || this.closed) return total;
    }
  }

  private async fireBatch(): Promise<number> {
    const due = await this.options.timers.claimDue(
      this.clock.now(),
      this.options.timerBatchSize,
      this.options.timerLeaseMs,
    );
    await Promise.all(due.map((timer) => this.fire(timer)));
    return due.length;
  }

  private async fire(timer: Timer): Promise<void> {
    try {
      await this.apply(timer.txId, { type: 'timer', timer: timer.payload });
      this.stats.timersFired++;
    } catch (err) {
      if (!(err instanceof RunNotFoundError)) {
        // Leave the timer claimed: it fires again when its lease runs out.
        this.logger.warn(
          { txId: timer.txId, timerId: timer.id, err: String(err) },
          'timer failed, will refire',
        );
        return;
      }
    }
    await this.options.timers.complete([timer.id]);
  }

  private async handleResult(envelope: Envelope): Promise<void> {
    const event = toEngineEvent(envelope);
    try {
      const ignored = await this.apply(envelope.txId, event);
      if (ignored !== undefined && event.type === 'result') {
        this.stats.ignoredResults++;
        this.logger.debug({ txId: envelope.txId, step: envelope.step, reason: ignored }, 'result ignored');
      }
    } catch (err) {
      // A result for a run that no longer exists (retention removed it) is moot, not poison.
      if (err instanceof RunNotFoundError) return;
      throw err;
    }
  }

  private async operatorEvent(txId: string, event: OperatorEvent): Promise<Run> {
    const stored = await this.options.store.get(txId);
    if (!stored) throw new RunNotFoundError(txId);
    if (event.type !== 'resume_compensation' && stored.run.steps[event.step] === undefined) {
      throw new MultiAgentsError(ErrorCode.NotFound, `run ${txId} has no step ${event.step}`, {
        retryable: false,
        details: { txId, step: event.step },
      });
    }
    // The one way out of a terminal state: the engine judges whether the action applies.
    const ignored = await this.apply(txId, event);
    if (ignored !== undefined) {
      const what =
        event.type === 'resume_compensation'
          ? 'resume the compensation'
          : `${event.type === 'retry_step' ? 'retry' : 'skip'} step ${event.step}`;
      throw new FailedPreconditionError(`cannot ${what} of run ${txId}: ${ignored}`, {
        txId,
        ...(event.type === 'resume_compensation' ? {} : { step: event.step }),
      });
    }
    return this.getRun(txId);
  }

  private async userEvent(txId: string, event: EngineEvent): Promise<Run> {
    const stored = await this.options.store.get(txId);
    if (!stored) throw new RunNotFoundError(txId);
    if (isTerminalRunState(stored.run.state)) {
      throw new FailedPreconditionError(`run ${txId} is ${stored.run.state}`, {
        txId,
        state: stored.run.state,
      });
    }
    const ignored = await this.apply(txId, event);
    if (ignored !== undefined && event.type === 'cancel') {
      throw new FailedPreconditionError(`cannot cancel run ${txId}: ${ignored}`, { txId });
    }

    return this.getRun(txId);
  }

  /** Load, decide, compare-and-set, carry out. Returns the reason when the event changed nothing. */
  private apply(txId: string, event: EngineEvent): Promise<string | undefined> {
    return this.mutex.run(txId, async () => {
      // The run this process wrote last saves a read per event. A stale copy (another
      // orchestrator moved the run on) cannot do harm: compare-and-set refuses what is decided
      // on it, and a decision to ignore the event is only trusted once made on a fresh read.
      let current: Versioned | undefined = this.recent.get(txId);
      let fresh = current === undefined;
      // Effects an earlier writer saved but did not carry out (its publish failed, or it crashed):
      // carried out with this write, since clearing the outbox up to the new version drops them.
      let leftover: readonly Effect[] = [];
      for (let attempt = 0; attempt < this.options.maxCasRetries;) {
        if (!current) {
          const stored = await this.options.store.get(txId);
          if (!stored) throw new RunNotFoundError(txId);
          current = { run: stored.run, version: stored.version };
          leftover = stored.outbox.map((entry) => entry.effect);
          fresh = true;
        }
        const workflow = await this.workflow(current.run.workflowId, current.run.workflowVersion);
        const decision = decide(workflow, current.run, event, this.clock.now());
        if (decision.ignored !== undefined) {
          if (!fresh) {
            current = undefined;
            continue;
          }
          this.stats.ignoredEvents++;
          return decision.ignored;
        }
        attempt++;
        const version = await this.options.store.compareAndSet(
          txId,
          current.version,
          decision.run,
          decision.effects,
        );
        if (version === undefined) {
          this.stats.casConflicts++;
          this.recent.delete(txId);
          current = undefined;
          continue;
        }
        const done = await this.carryOut(txId, version, [...leftover, ...decision.effects]);
        // Only a run whose outbox is empty is worth caching: the next write then has nothing left over.
        if (done) this.remember(decision.run, version);
        else this.recent.delete(txId);
        this.notify(decision.run);
        return undefined;
      }
      throw new MultiAgentsError(
        ErrorCode.Conflict,
        `run ${txId}: gave up after ${this.options.maxCasRetries} conflicting writes`,
      );
    });
  }

  /** Keeps the latest version this process wrote of a live run, up to `recentRunsCached` runs. */
  private remember(run: Run, version: number): void {
    this.recent.delete(run.txId);
    if (isTerminalRunState(run.state) || this.options.recentRunsCached === 0) return;
    this.recent.set(run.txId, { run, version });
    if (this.recent.size > this.options.recentRunsCached) {
      const oldest = this.recent.keys().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
  }

  /** Publishes, schedules and unschedules, then marks the outbox done up to `version`. */
  private async carryOut(txId: string, version: number, effects: readonly Effect[]): Promise<boolean> {
    const byTopic = new Map<string, Envelope[]>();
    const timerOps = new Map<string, Timer | null>();
    for (const effect of effects) {
      if (effect.type === 'publish') {
        const list = byTopic.get(effect.topic);
        if (list) list.push(effect.envelope);
        else byTopic.set(effect.topic, [effect.envelope]);
      } else if (effect.type === 'schedule') {
        timerOps.set(effect.timer.id, effect.timer);
      } else {
        timerOps.set(effect.timerId, null);
      }
    }
    try {
      const work: Promise<void>[] = [];
      for (const [topic, envelopes] of byTopic) work.push(this.options.bus.publish(topic, envelopes));
      const schedule = [...timerOps.values()].filter((t): t is Timer => t !== null);
      const cancel = [...timerOps.entries()].filter(([, t]) => t === null).map(([id]) => id);
      if (schedule.length > 0) work.push(this.options.timers.schedule(schedule));
      if (cancel.length > 0) work.push(this.options.timers.cancel(cancel));
      await Promise.all(work);
      await this.options.store.clearOutbox(txId, version);
      return true;
    } catch (err) {
      // The state is saved with its outbox; the sweep carries the effects out later.
      this.logger.warn(
        { txId, version, err: String(err) },
        'carrying out effects failed; left in the outbox',
      );
      return false;
    }
  }

  private workflow(id: string, version: number, known?: WorkflowDefinition): Promise<CompiledWorkflow> {
    const key = `${id}@${version}`;
    let compiled = this.compiled.get(key);
    if (!compiled) {
      compiled = (async () => {
        const definition = known ?? (await this.options.definitions.get(id, version));
        if (!definition) throw new DefinitionNotFoundError(id, version);
        return compileWorkflow(definition);
      })();
      compiled.catch(() => this.compiled.delete(key));
      this.compiled.set(key, compiled);
    }
    return compiled;
  }

  private notify(run: Run): void {
    for (const listener of this.listeners) listener(run);
    if (isTerminalRunState(run.state)) {
      const waiters = this.waiters.get(run.txId);
      if (waiters) for (const waiter of [...waiters]) waiter(run);
    }
  }

  private every(intervalMs: number, work: () => Promise<unknown>): void {
    const interval = setInterval(() => {
      if (this.closed) return;
      work().catch((err: unknown) => this.logger.error({ err: String(err) }, 'background work failed'));
    }, intervalMs);
    interval.unref();
    this.intervals.push(interval);
  }
}
