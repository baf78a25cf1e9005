import {
  AlreadyExistsError,
  checkJsonBounds,
  copyJsonData,
  DEFAULT_MAX_JSON_DEPTH,
  DefinitionNotFoundError,
  MAX_ENVELOPE_BYTES,
  ErrorCode,
  EventType,
  FailedPreconditionError,
  Groups,
  isTerminalRunState,
  isTooLargeError,
  MultiAgentsError,
  PoisonMessageError,
  ResourceExhaustedError,
  RunNotFoundError,
  RunState,
  Topics,
  ValidationError,
  type Envelope,
  type ErrorInfo,
  type Run,
  type StepCommandPayload,
  type StepCancelPayload,
  type StepResultPayload,
  type TransitionEventPayload,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { compileWorkflow, taskSteps, type CompiledWorkflow } from '../definition/validate-definition';
import {
  awaitedCommandIds,
  createRun,
  decide,
  isCommandIdOf,
  recoverInFlight,
  type Decision,
  type EngineEvent,
  type OperatorEvent,
} from '../engine/saga-engine';
import { systemClock, type Clock } from '../ports/clock';
import type { DefinitionStore, DefinitionSummary } from '../ports/definition-store';
import type { Delivery, EventBus, Subscription } from '../ports/event-bus';
import { txIdForIdempotencyKey, uuidGenerator, type IdGenerator } from '../ports/id-generator';
import type { LocalSlot, LocalWorkers } from '../ports/local-workers';
import { silentLogger, type Logger } from '../ports/logger';
import { OUTAGE_MAX_DELIVERIES, retryAfterOutage } from '../ports/outage-retry';
import type { WorkerManagerRecord, WorkerRegistry } from '../ports/monitoring';
import type { OrchestratorObserver, TransitionCause } from '../ports/observers';
import type { RunFilter, RunPage, RunRevision, RunStore, Transition } from '../ports/run-store';
import type { Timer } from '../ports/timer';
import { LruMap } from '../util/lru-map';
import { KeyedMutex } from './keyed-mutex';

/** What an orchestrator is built from. */
export interface OrchestratorOptions {
  readonly bus: EventBus;
  readonly runs: RunStore;
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
  /** Tracing, metrics and logs hook in here (see {@link OrchestratorObserver}). */
  readonly observer?: OrchestratorObserver;
  /** The live worker-manager replicas: `listWorkerManagers`, and warnings about unhosted workers. */
  readonly registry?: WorkerRegistry;
  /** One `workflow.transitioned` event per transition on `Topics.events` (default true). */
  readonly lifecycleEvents?: boolean;
  /**
   * A command whose result has not come after this long is sent again, with the same command id
   * (the later of two results is ignored), then again after twice as long, and so on; 0 never
   * sends a command twice (a backend that cannot lose an acknowledged message).
   */
  readonly redispatchAfterMs?: number;
  /**
   * With `redispatchAfterMs` > 0: when the bus says its broker connection came back, check every
   * command this process awaits at once instead of at its deadline (default true). A broker whose
   * restarts keep what it acknowledged (Redis: its data is a consistent prefix of its history)
   * does not need it.
   */
  readonly redispatchOnRestored?: boolean;
  /**
   * How often live runs idle for longer than `redispatchAfterMs` are looked for and their
   * commands sent again: runs whose writer died before its messages were sent, or whose messages
   * a broker lost. Also done once at start. 0 disables (default: 0 when `redispatchAfterMs` is 0).
   */
  readonly recoverySweepIntervalMs?: number;
  /**
   * Workers hosted in this process (its worker-manager): a command for one of them with a free
   * slot runs here at once, and from `start()` to `close()` the results of what runs here come
   * back without the bus (eager dispatch). The run record says the command was sent either way;
   * with `redispatchAfterMs` > 0 a command whose result never came (this process died) is sent
   * again on the bus.
   */
  readonly localWorkers?: LocalWorkers;
}

type Defaulted =
  | 'timerPollIntervalMs'
  | 'timerBatchSize'
  | 'timerLeaseMs'
  | 'resultConcurrency'
  | 'maxCasRetries'
  | 'maxPayloadBytes'
  | 'recentRunsCached'
  | 'resultMaxDeliveries'
  | 'resultRetryBaseDelayMs'
  | 'lifecycleEvents'
  | 'redispatchAfterMs'
  | 'redispatchOnRestored'
  | 'recoverySweepIntervalMs';

/** Defaults of {@link OrchestratorOptions}. */
export const DEFAULT_ORCHESTRATOR_OPTIONS: Readonly<Required<Pick<OrchestratorOptions, Defaulted>>> =
  Object.freeze({
    timerPollIntervalMs: 50,
    timerBatchSize: 256,
    timerLeaseMs: 30_000,
    resultConcurrency: 64,
    maxCasRetries: 20,
    maxPayloadBytes: 256 * 1024,
    recentRunsCached: 10_000,
    resultMaxDeliveries: OUTAGE_MAX_DELIVERIES,
    resultRetryBaseDelayMs: 250,
    lifecycleEvents: true,
    redispatchAfterMs: 0,
    redispatchOnRestored: true,
    recoverySweepIntervalMs: 60_000,
  });

type Resolved = OrchestratorOptions & Required<Pick<OrchestratorOptions, Defaulted>>;

/** Longest wait between two dispatches of a command whose result does not come. */
const MAX_REDISPATCH_DELAY_MS = 10 * 60_000;
/** Runs read per page by the recovery sweep. */
const SWEEP_PAGE = 256;
/** The states in which a run has commands in flight. */
const ACTIVE_STATES = [RunState.Running, RunState.Compensating, RunState.Cancelling] as const;

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
  /** Commands sent again because their result did not come in time (same command id). */
  redispatched: number;
  /** Results for runs the store does not have: expired, or lost by a broker that forgot a write. */
  unknownRuns: number;
  /** Commands run by workers hosted in this process, without the bus (`localWorkers`). */
  localDispatched: number;
  /** Successful results whose output made the run too large to store or send: failed instead. */
  oversizedResults: number;
  /**
   * Awaited commands the recovery sweep could not send again because their input mapping fails
   * on the run's current context: the attempt failed, or was left to a deadline of its own (see
   * `recoverInFlight`). Counted and logged each time a sweep finds one.
   */
  unsendableCommands: number;
  /**
   * Attempts in flight whose workers were asked to stop (`step.cancel` on `Topics.control`): a
   * cancel or a failure began their run's unwinding, or the run gave them up (a timeout).
   */
  cancelsBroadcast: number;
}

type RunListener = (run: Run) => void;

interface Versioned extends RunRevision {
  readonly run: Run;
}

/** A command this process sent, awaiting its result. */
interface Dispatched {
  readonly txId: string;
  readonly envelope: Envelope<StepCommandPayload>;
  readonly dueAt: number;
  readonly delayMs: number;
}

/**
 * A private copy of a JSON value from outside (start input, signal payload, operator output), as
 * it would arrive over the API: checked for size and depth first (nothing accepted can fail to
 * encode later), then copied, so the caller keeps its own object and the run stores plain JSON.
 */
function jsonCopy(value: unknown, maxBytes: number, what: string): unknown {
  checkJsonBounds(value, { maxBytes, maxDepth: DEFAULT_MAX_JSON_DEPTH, what });
  // Plain JSON data by now, so copied without the text round trip (kept for what slips through:
  // a getter that changes its answer between the check and the copy).
  const copy = copyJsonData(value);
  if (copy !== undefined) return copy;
  const text = JSON.stringify(value) as string | undefined;
  return text === undefined ? null : (JSON.parse(text) as unknown);
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
  if (!isCommandIdOf(commandId, envelope.txId, envelope.step)) {
    throw new PoisonMessageError(
      `${envelope.type} ${envelope.id}: commandId does not belong to its run and step`,
    );
  }
  if (envelope.type === EventType.StepHeartbeat) return { type: 'heartbeat', step: envelope.step, commandId };
  if (envelope.type !== EventType.StepResult) {
    throw new PoisonMessageError(`unexpected ${envelope.type} on the results topic`);
  }
  if (payload['ok'] === true) {
    const output = payload['output'];
    try {
      // What a run stores must encode again later, on every backend: a forged or runaway output
      // (too deep to encode) is refused here, not accepted into the run.
      checkJsonBounds(output, {
        maxBytes: MAX_ENVELOPE_BYTES,
        maxDepth: DEFAULT_MAX_JSON_DEPTH,
        what: 'output',
      });
    } catch (err) {
      throw new PoisonMessageError(`step.result ${envelope.id}: ${(err as Error).message}`);
    }
    return { type: 'result', step: envelope.step, commandId, outcome: { ok: true, output } };
  }
  const error = parseErrorInfo(payload['error']);
  if (payload['ok'] !== false || !error) {
    throw new PoisonMessageError(`step.result ${envelope.id} is neither a success nor a well-formed failure`);
  }
  return { type: 'result', step: envelope.step, commandId, outcome: { ok: false, error } };
}

function causeOf(event: EngineEvent): TransitionCause {
  switch (event.type) {
    case 'start':
    case 'result':
    case 'heartbeat':
    case 'timer':
    case 'signal':
    case 'cancel':
      return event.type;
    default:
      return 'operator';
  }
}

/** The command with the headers an observer gave it (its dispatch span), if any. */
function withHeaders(
  command: Envelope<StepCommandPayload>,
  headers: Readonly<Record<string, string>> | undefined,
): Envelope<StepCommandPayload> {
  return headers === undefined ? command : { ...command, headers };
}

/**
 * The shell around the pure engine: load, decide, commit. Each transition is one atomic write of
 * one port (`RunStore.commit`): the run's changed parts, its commands, timers and lifecycle event,
 * and the acknowledgement of the result that caused it. It consumes results, fires durable
 * timers, and sends again a command whose result does not come (a broker that forgot it). Several
 * orchestrators may run at once: compare-and-set decides.
 *
 * @example
 * const orchestrator = new Orchestrator({ bus, runs, definitions });
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
    redispatched: 0,
    unknownRuns: 0,
    localDispatched: 0,
    oversizedResults: 0,
    unsendableCommands: 0,
    cancelsBroadcast: 0,
  };
  private readonly clock: Clock;
  private readonly ids: IdGenerator;
  private readonly logger: Logger;
  private readonly options: Resolved;
  private readonly observer: OrchestratorObserver;
  /**
   * Compiled workflows by id, then version; a promise while one is being loaded and compiled. Two
   * lookups, not one on an `id@version` key: that key was built for every event.
   */
  private readonly compiled = new Map<string, Map<number, CompiledWorkflow | Promise<CompiledWorkflow>>>();
  private readonly mutex = new KeyedMutex();
  private readonly listeners = new Set<RunListener>();
  /** onRunMoved listeners, and the tail of the events that feeds them while there are any. */
  private readonly movedListeners = new Set<MovedListener>();
  private movedFeed: Promise<Subscription | undefined> | undefined;
  private readonly recent: LruMap<string, Versioned>;
  /** waitForTerminal callers by txId: a map, so many waiters cost O(1) per change. */
  private readonly waiters = new Map<string, Set<RunListener>>();
  /** Commands sent by this process and not answered yet, oldest deadline first (insertion order). */
  private readonly dispatched = new Map<string, Dispatched>();
  /** The same, by run. */
  private readonly dispatchedByRun = new Map<string, Set<string>>();
  private readonly intervals: NodeJS.Timeout[] = [];
  private subscription: Subscription | undefined;
  private unwatchRestore: (() => void) | undefined;
  private unwatchCache: (() => void) | undefined;
  private firing: Promise<number> | undefined;
  private redispatching: Promise<number> | undefined;
  private sweeping: Promise<number> | undefined;
  private closed = false;

  constructor(options: OrchestratorOptions) {
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...DEFAULT_ORCHESTRATOR_OPTIONS, ...defined } as Resolved;
    this.recent = new LruMap(this.options.recentRunsCached);
    this.clock = options.clock ?? systemClock;
    this.ids = options.ids ?? uuidGenerator;
    this.logger = (options.logger ?? silentLogger).child({ component: 'orchestrator' });
    this.observer = options.observer ?? {};
  }

  /** Consumes results, fires timers, and (with redispatch on) recovers what a crash left waiting. */
  async start(): Promise<void> {
    // Cached runs may be newer than what a restarted broker kept: decide on fresh reads again.
    this.unwatchCache = this.options.bus.onRestored?.(() => this.recent.clear());
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
          await this.handleResult(delivery);
        } catch (err) {
          throw retryAfterOutage(err, delivery.deliveryCount, this.options.resultRetryBaseDelayMs);
        }
      },
    );
    this.options.localWorkers?.deliverResultsTo(this.localResult);
    if (this.options.timerPollIntervalMs > 0) {
      this.every(this.options.timerPollIntervalMs, () => this.fireDueTimers());
    }
    const redispatchAfterMs = this.options.redispatchAfterMs;
    if (redispatchAfterMs > 0) {
      this.every(Math.max(100, Math.min(1_000, redispatchAfterMs / 4)), () => this.redispatchOverdue());
      // A broker that restarted may have forgotten what it acknowledged last: check everything now.
      if (this.options.redispatchOnRestored) {
        this.unwatchRestore = this.options.bus.onRestored?.(() => {
          void this.redispatchOverdue(true).catch((err: unknown) =>
            this.logger.warn({ err: String(err) }, 'redispatch after a broker restart failed'),
          );
        });
      }
      if (this.options.recoverySweepIntervalMs > 0) {
        void this.sweep().catch((err: unknown) =>
          this.logger.warn({ err: String(err) }, 'recovery sweep at start failed; will retry'),
        );
        this.every(this.options.recoverySweepIntervalMs, () => this.sweep());
      }
    }
  }

  /** Stops consuming and firing; waits for the work in flight. */
  async close(): Promise<void> {
    this.closed = true;
    // Results of the local workers go on the bus again, for another orchestrator.
    this.options.localWorkers?.deliverResultsTo(undefined);
    for (const interval of this.intervals) clearInterval(interval);
    this.unwatchRestore?.();
    this.unwatchCache?.();
    await this.subscription?.close();
    this.movedListeners.clear();
    await this.movedFeed?.then((tail) => tail?.close());
    this.movedFeed = undefined;
    // Their failures were logged by the background loop that started them: closing waits, never
    // throws them again (a sweep that timed out against a cluster mid-failover ended the process).
    const settled = (work: Promise<unknown> | undefined) => work?.catch(() => undefined);
    await settled(this.firing);
    await settled(this.redispatching);
    await settled(this.sweeping);
  }

  /**
   * Validates and stores a definition. Returns false when this exact version was registered
   * before; throws ValidationError (every problem listed) or AlreadyExistsError.
   */
  async registerWorkflow(definition: unknown): Promise<boolean> {
    const knownWorkers = this.options.knownWorkers?.();
    const compiled = compileWorkflow(definition, knownWorkers ? { knownWorkers } : {});
    const created = await this.options.definitions.put(compiled.definition);
    // Stored (or found stored as it is: a version never changes), so this is what a run of it
    // will use: its first start or result need not compile it again.
    const versions = this.compiledVersions(compiled.definition.id);
    if (!versions.has(compiled.definition.version)) versions.set(compiled.definition.version, compiled);
    return created;
  }

  /**
   * The workers (and compensations) of `definition` that no live worker-manager replica hosts
   * right now: registering it is fine (a replica may start later), but its runs would wait for
   * them. Empty without a registry.
   */
  async unhostedWorkers(definition: WorkflowDefinition): Promise<string[]> {
    if (!this.options.registry) return [];
    const hosted = new Set((await this.options.registry.list()).flatMap((r) => r.workers));
    const needed = new Set<string>();
    for (const step of taskSteps(definition.steps)) {
      needed.add(step.worker);
      if (step.compensation !== undefined) needed.add(step.compensation);
    }
    return [...needed].filter((worker) => !hosted.has(worker)).sort();
  }

  /** Every live worker-manager replica (empty without a registry). */
  async listWorkerManagers(): Promise<WorkerManagerRecord[]> {
    return this.options.registry ? this.options.registry.list() : [];
  }

  /** Starts a run; once this resolves the run is durable. */
  async startWorkflow(
    workflowId: string,
    input: unknown,
    options: StartWorkflowOptions = {},
  ): Promise<StartWorkflowResult> {
    if (!isPlainObject(input))
      throw new ValidationError('invalid start input', ['input must be a JSON object']);
    input = jsonCopy(input, this.options.maxPayloadBytes, 'input');
    const definition = await this.options.definitions.get(workflowId, options.version);
    if (!definition) throw new DefinitionNotFoundError(workflowId, options.version);
    const workflow = await this.workflow(definition.id, definition.version, definition);
    const problems = workflow.checkInput?.(input) ?? [];
    if (problems.length > 0) {
      throw new ValidationError(
        `input does not match ${definition.id} v${definition.version}'s inputSchema`,
        problems,
      );
    }
    // A store that bounds the runs in progress holds the start here, before its time is taken.
    const release = await this.options.runs.admit?.();
    try {
      const now = this.clock.now();
      const key = options.idempotencyKey;
      const txId = key === undefined ? this.ids.next() : txIdForIdempotencyKey(key);
      const traceHeaders =
        this.observer.runStarting?.({ workflowId, txId, callerHeaders: options.traceHeaders ?? {} }) ??
        options.traceHeaders;
      const run = createRun({
        txId,
        workflow: definition,
        input: input as Record<string, unknown>,
        now,
        ...(key === undefined ? {} : { idempotencyKey: key }),
        ...(traceHeaders === undefined ? {} : { traceHeaders: { ...traceHeaders } }),
      });
      const decision = decide(workflow, run, { type: 'start' }, now);
      // Under the run's lock: a result that races in waits until this process knows the run.
      return await this.mutex.run(txId, async () => {
        const transition = this.transition(decision, 1, { changedSteps: Object.keys(decision.run.steps) });
        const local = this.reserveLocal(transition);
        const result = await this.options.runs.create(local.written).catch((err: unknown) => {
          local.release();
          throw err;
        });
        if (!result.created) {
          local.release();
          const existing = result.stored.run;
          if (
            existing.workflowId !== workflowId ||
            JSON.stringify(existing.input) !== JSON.stringify(input)
          ) {
            throw new AlreadyExistsError(`idempotency key ${key} started a different run`, { txId });
          }
          return { txId, created: false };
        }
        try {
          this.committed(decision, result.stored, transition, RunState.Pending, 'start');
        } finally {
          // Committed: the commands go whatever a listener does.
          local.run();
        }
        return { txId, created: true };
      });
    } finally {
      release?.();
    }
  }

  /** The run, or RunNotFoundError. */
  async getRun(txId: string): Promise<Run> {
    const stored = await this.options.runs.get(txId);
    if (!stored) throw new RunNotFoundError(txId);
    return stored.run;
  }

  /** Runs matching `filter`, newest first. */
  listRuns(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    return this.options.runs.list(filter, limit, cursor);
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
    const copy = jsonCopy(payload, this.options.maxPayloadBytes, 'signal payload');
    return this.userEvent(txId, { type: 'signal', name, payload: copy });
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
    const copy = output === undefined ? undefined : jsonCopy(output, this.options.maxPayloadBytes, 'output');
    return this.operatorEvent(txId, {
      type: 'skip_step',
      step,
      ...(copy === undefined ? {} : { output: copy }),
    });
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
   * Calls `listener` with the id of every run another process moved (the `workflow.transitioned`
   * events, read through a tail of the events while anyone listens; a version this process wrote
   * last, which {@link onRunChanged} brought, is left out), so a watcher here sees at once what
   * other orchestrators write; it reads the run itself. Nothing comes for transitions written
   * with lifecycle events off. The tail starts where the events are when it opens, so a run that
   * moved while it was opening is not announced: `opened` is called once the tail has opened
   * (for a listener added while it opens), the moment to read again what the listener follows.
   * A tail that cannot open is tried again with the next listener. Returns an unsubscribe function.
   */
  onRunMoved(listener: (txId: string) => void, opened?: () => void): () => void {
    if (this.closed) return noop;
    const entry: MovedListener = { moved: listener, opened };
    this.movedListeners.add(entry);
    if (this.movedFeed === undefined) {
      const feed: Promise<Subscription | undefined> = this.options.bus
        .tail(Topics.events, (envelope) => {
          if (envelope.type !== EventType.WorkflowTransitioned) return;
          // Written by this process (or overtaken by a later write of its own): its listeners of
          // onRunChanged had the run already, without a read.
          const { version } = envelope.payload as { version?: unknown };
          const written = this.recent.get(envelope.txId)?.version;
          if (written !== undefined && typeof version === 'number' && version <= written) return;
          for (const { moved } of this.movedListeners) moved(envelope.txId);
        })
        .then(
          (tail) => {
            if (this.movedFeed === feed) {
              for (const { opened: open } of this.movedListeners) {
                try {
                  open?.();
                } catch (err) {
                  this.logger.warn({ err }, 'a listener of onRunMoved threw');
                }
              }
            }
            return tail;
          },
          (err: unknown) => {
            this.logger.warn(
              { err },
              'could not tail the events: changes other orchestrators write are not seen at once',
            );
            // Only this feed: a later one may have replaced it since.
            if (this.movedFeed === feed) this.movedFeed = undefined;
            return undefined;
          },
        );
      this.movedFeed = feed;
    }
    return () => {
      if (!this.movedListeners.delete(entry) || this.movedListeners.size > 0) return;
      const feed = this.movedFeed;
      this.movedFeed = undefined;
      void feed?.then((tail) => tail?.close());
    };
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
   * Sends again the commands this process sent whose results are overdue (all of them with
   * `all`: after a broker restart), if their runs still wait for them. Returns how many were sent.
   */
  async redispatchOverdue(all = false): Promise<number> {
    if (this.redispatching) return this.redispatching;
    this.redispatching = this.redispatchBatch(all).finally(() => (this.redispatching = undefined));
    return this.redispatching;
  }

  /**
   * Looks through the live runs of the store for ones idle longer than `redispatchAfterMs` that
   * this process is not already watching, and sends their awaited commands again (or fails an
   * attempt whose command it cannot build again, see `recover`). Returns how many runs it recovered.
   */
  async sweep(): Promise<number> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = this.sweepLiveRuns().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  // ---- internals ----------------------------------------------------------------------------

  private async fireBatch(): Promise<number> {
    const due = await this.options.runs.claimDueTimers(
      this.clock.now(),
      this.options.timerBatchSize,
      this.options.timerLeaseMs,
    );
    await Promise.all(due.map((timer) => this.fire(timer)));
    return due.length;
  }

  private async fire(timer: Timer): Promise<void> {
    let ignored: string | undefined;
    try {
      ignored = await this.apply(
        timer.txId,
        { type: 'timer', timer: timer.payload },
        { firedTimer: timer.id },
      );
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
      ignored = 'run not found';
    }
    // A committed transition removed the timer with its write; one that changed nothing did not.
    if (ignored !== undefined) await this.options.runs.completeTimers([timer.id]);
  }

  private handleResult(delivery: Delivery): Promise<void> {
    return this.acceptResult(delivery.envelope, delivery);
  }

  /** A result or heartbeat, off the bus (`ack`: its delivery, acknowledged by the commit) or from a local worker. */
  private async acceptResult(envelope: Envelope, ack?: Delivery): Promise<void> {
    const event = toEngineEvent(envelope);
    try {
      const ignored = await this.apply(envelope.txId, event, ack ? { ack } : {});
      if (ignored !== undefined && event.type === 'result') {
        this.stats.ignoredResults++;
        this.logger.debug({ txId: envelope.txId, step: envelope.step, reason: ignored }, 'result ignored');
      }
    } catch (err) {
      // A result for a run the store does not have: expired, or lost by a broker that forgot a
      // write after acknowledging it. Moot either way, not poison; counted and reported.
      if (err instanceof RunNotFoundError) {
        this.stats.unknownRuns++;
        this.observer.unknownRun?.(envelope.txId);
        this.logger.warn(
          { txId: envelope.txId, step: envelope.step, messageId: envelope.id },
          'result for a run the store does not have (expired, or lost by the broker)',
        );
        return;
      }
      // A successful result whose output makes the run too large to store (or a command it
      // implies too large to send): applied as it is, it would be refused for ever and the run
      // would wait for good. The step fails instead (not retried: a rerun would return the same),
      // and the run goes on as after any failure: compensates, or fails.
      if (event.type === 'result' && event.outcome.ok && isTooLargeError(err)) {
        this.stats.oversizedResults++;
        this.logger.warn(
          { txId: envelope.txId, step: envelope.step, err },
          "a step's output makes its run too large to store or send: the step fails",
        );
        const failed: EngineEvent = {
          ...event,
          outcome: {
            ok: false,
            error: {
              code: ErrorCode.ResourceExhausted,
              message: `the step's output makes the run too large to store or send: ${(err as Error).message}`,
              retryable: false,
            },
          },
        };
        await this.apply(envelope.txId, failed, ack ? { ack } : {});
        return;
      }
      throw err;
    }
  }

  private async operatorEvent(txId: string, event: OperatorEvent): Promise<Run> {
    const stored = await this.options.runs.get(txId);
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
    const stored = await this.options.runs.get(txId);
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
    // A signal is ignored only when no step waits for it and its buffer is full: refused, never
    // dropped while the caller is told it went in.
    if (ignored !== undefined && event.type === 'signal') {
      throw new ResourceExhaustedError(`signal ${event.name} of run ${txId} refused: ${ignored}`, {
        txId,
        signal: event.name,
      });
    }

    return this.getRun(txId);
  }

  /** Load, decide, commit. Returns the reason when the event changed nothing. */
  private apply(
    txId: string,
    event: EngineEvent,
    cause: { ack?: Delivery; firedTimer?: string } = {},
  ): Promise<string | undefined> {
    return this.mutex.run(txId, async () => {
      // The run this process wrote last saves a read per event. A stale copy (another
      // orchestrator moved the run on) cannot do harm: compare-and-set refuses what is decided
      // on it, and a decision to ignore the event is only trusted once made on a fresh read.
      let current: Versioned | undefined = this.recent.get(txId);
      let fresh = current === undefined;
      for (let attempt = 0; attempt < this.options.maxCasRetries;) {
        if (!current) {
          const stored = await this.options.runs.get(txId);
          if (!stored) throw new RunNotFoundError(txId);
          current = stored;
          fresh = true;
        }
        // Compiled already (nearly always): no await on the per-event path.
        const found = this.workflow(current.run.workflowId, current.run.workflowVersion);
        const workflow = found instanceof Promise ? await found : found;
        const decision = decide(workflow, current.run, event, this.clock.now());
        if (decision.ignored !== undefined) {
          if (!fresh) {
            current = undefined;
            continue;
          }
          this.stats.ignoredEvents++;
          this.observer.ignored?.(txId, causeOf(event), decision.ignored);
          return decision.ignored;
        }
        attempt++;
        const version = current.version + 1;
        const transition = this.transition(decision, version, {
          ...(cause.ack ? { ack: cause.ack } : {}),
          ...(cause.firedTimer ? { firedTimer: cause.firedTimer } : {}),
        });
        const local = this.reserveLocal(transition);
        let revision: RunRevision | undefined;
        try {
          revision = await this.options.runs.commit(current, local.written);
        } catch (err) {
          local.release();
          throw err;
        }
        if (revision === undefined) {
          local.release();
          this.stats.casConflicts++;
          this.observer.conflicted?.(txId);
          this.recent.delete(txId);
          current = undefined;
          continue;
        }
        try {
          this.committed(
            decision,
            { run: decision.run, version: revision.version, revision: revision.revision },
            transition,
            current.run.state,
            causeOf(event),
          );
        } finally {
          local.run();
        }
        return undefined;
      }
      throw new MultiAgentsError(
        ErrorCode.Conflict,
        `run ${txId}: gave up after ${this.options.maxCasRetries} conflicting writes`,
      );
    });
  }

  /** The write of one decision, as the store's port takes it. */
  private transition(
    decision: Decision,
    version: number,
    extra: { changedSteps?: readonly string[]; ack?: Delivery; firedTimer?: string },
  ): Transition {
    const run = decision.run;
    let cancel = decision.cancel;
    const fired = extra.firedTimer;
    // The timer that caused this transition goes with it, unless the decision scheduled it again.
    if (fired !== undefined && !cancel.includes(fired) && !decision.schedule.some((t) => t.id === fired)) {
      cancel = [...cancel, fired];
    }
    let commands = decision.commands;
    if (commands.length > 0 && this.observer.dispatching) {
      const headers = this.observer.dispatching(run, commands, false);
      if (headers) commands = commands.map((c) => withHeaders(c, headers.get(c.id)));
    }
    const event: Envelope<TransitionEventPayload> | undefined =
      this.options.lifecycleEvents && decision.lifecycle.length > 0
        ? {
            id: `${run.txId}:v${version}`,
            type: EventType.WorkflowTransitioned,
            txId: run.txId,
            workflowId: run.workflowId,
            time: run.updatedAt,
            headers: run.traceHeaders ?? {},
            payload: { version, state: run.state, events: decision.lifecycle },
          }
        : undefined;
    return {
      run,
      changedSteps: extra.changedSteps ?? decision.changedSteps,
      commands,
      ...(event ? { event } : {}),
      schedule: decision.schedule,
      cancel,
      ...(extra.ack ? { ack: extra.ack } : {}),
    };
  }

  /**
   * Holds a slot of a local worker for each command one can take now (see
   * {@link OrchestratorOptions.localWorkers}): the store writes the transition without them, and
   * they run here once it is committed.
   */
  private reserveLocal(transition: Transition): LocalDispatch {
    const local = this.options.localWorkers;
    if (local === undefined || transition.commands.length === 0) return nothingLocal(transition);
    const held: [Envelope<StepCommandPayload>, LocalSlot][] = [];
    const sent: Envelope<StepCommandPayload>[] = [];
    for (const command of transition.commands) {
      const slot = local.reserve(command.payload.worker);
      if (slot) held.push([command, slot]);
      else sent.push(command);
    }
    if (held.length === 0) return nothingLocal(transition);
    return {
      written: { ...transition, commands: sent },
      run: () => {
        for (const [command, slot] of held) slot.run(command, this.countLocal);
      },
      release: () => {
        for (const [, slot] of held) slot.release();
      },
    };
  }

  private readonly countLocal = (): void => {
    this.stats.localDispatched += 1;
  };

  /** Where local workers hand their results (rejects when it could not apply one: they use the bus then). */
  private readonly localResult = (result: Envelope<StepResultPayload>): Promise<void> =>
    this.acceptResult(result);

  /** After a successful write: cache the run, watch its commands, tell observers and listeners. */
  private committed(
    decision: Decision,
    stored: Versioned,
    transition: Transition,
    previousState: Run['state'],
    cause: TransitionCause,
  ): void {
    const run = decision.run;
    this.remember(stored);
    if (this.options.redispatchAfterMs > 0) this.track(run, transition.commands);
    this.observer.committed?.({
      run,
      previousState,
      version: stored.version,
      cause,
      lifecycle: decision.lifecycle,
      commands: transition.commands,
      schedule: transition.schedule,
      at: run.updatedAt,
    });
    if (decision.abandoned !== undefined && decision.abandoned.length > 0) {
      this.askToStop(run, decision.abandoned, stored.version);
    }
    this.notify(run);
  }

  /**
   * Broadcasts a `step.cancel` of the attempts the run no longer wants (see `Decision.abandoned`),
   * so their workers can stop early (their handlers see `ctx.signal` fire). Best effort, after the
   * commit: a lost notice costs only the time the handlers take.
   */
  private askToStop(run: Run, commandIds: readonly string[], version: number): void {
    const reason = run.cancelRequested
      ? 'run cancelled'
      : run.error !== undefined
        ? `run failed (${run.error.code}): its attempts in flight are not needed`
        : 'attempt given up (a timeout or an operator action): its result is no longer awaited';
    const notice: Envelope<StepCancelPayload> = {
      id: `${run.txId}:v${version}:cancel`,
      type: EventType.StepCancel,
      txId: run.txId,
      workflowId: run.workflowId,
      time: run.updatedAt,
      headers: run.traceHeaders ?? {},
      payload: { commandIds, reason },
    };
    this.stats.cancelsBroadcast += commandIds.length;
    this.options.bus.broadcast(Topics.control, [notice]).catch((err: unknown) => {
      this.logger.warn(
        { txId: run.txId, commandIds, err: err instanceof Error ? err.message : String(err) },
        'could not ask the workers to stop attempts the run no longer needs (they run to their end)',
      );
    });
  }

  /** Keeps the latest version this process wrote of a live run, up to `recentRunsCached` runs. */
  private remember(stored: Versioned): void {
    const txId = stored.run.txId;
    if (isTerminalRunState(stored.run.state)) this.recent.delete(txId);
    else this.recent.set(txId, stored);
  }

  /** Forgets the run's answered commands and starts the clock on the new ones. */
  private track(run: Run, sent: readonly Envelope<StepCommandPayload>[]): void {
    const txId = run.txId;
    let ids = this.dispatchedByRun.get(txId);
    if (ids) {
      const awaited = isTerminalRunState(run.state) ? new Set<string>() : new Set(awaitedCommandIds(run));
      for (const id of ids) {
        if (!awaited.has(id)) {
          this.dispatched.delete(id);
          ids.delete(id);
        }
      }
    }
    if (sent.length > 0) {
      if (!ids) {
        ids = new Set();
        this.dispatchedByRun.set(txId, ids);
      }
      const delayMs = this.options.redispatchAfterMs;
      const dueAt = this.clock.now() + delayMs;
      for (const envelope of sent) {
        this.dispatched.delete(envelope.id);
        this.dispatched.set(envelope.id, { txId, envelope, dueAt, delayMs });
        ids.add(envelope.id);
      }
    }
    if (ids?.size === 0) this.dispatchedByRun.delete(txId);
  }

  private async redispatchBatch(all: boolean): Promise<number> {
    const now = this.clock.now();
    const overdue: Dispatched[] = [];
    for (const entry of this.dispatched.values()) {
      if (!all && entry.dueAt > now) {
        // Deadlines of equal delays are in insertion order; later entries are not due either.
        if (entry.delayMs === this.options.redispatchAfterMs) break;
        continue;
      }
      overdue.push(entry);
    }
    let sent = 0;
    for (const entry of overdue) {
      if (this.closed) break;
      const { txId, envelope } = entry;
      if (this.options.localWorkers?.running(envelope.payload.commandId)) {
        // Running here, only slow: the attempt's own timeout bounds it, as a worker-manager's would.
        this.dispatched.delete(envelope.id);
        this.dispatched.set(envelope.id, { ...entry, dueAt: now + entry.delayMs });
        continue;
      }
      let run: Run | undefined;
      try {
        run = (await this.options.runs.get(txId))?.run;
      } catch {
        continue; // the store is unreachable: try again at the next round
      }
      this.dispatched.delete(envelope.id);
      if (!run || !awaitedCommandIds(run).includes(envelope.id)) {
        const ids = this.dispatchedByRun.get(txId);
        ids?.delete(envelope.id);
        if (ids?.size === 0) this.dispatchedByRun.delete(txId);
        continue;
      }
      try {
        const headers = this.observer.dispatching?.(run, [envelope], true);
        await this.options.bus.publish(Topics.command(envelope.payload.worker), [
          withHeaders(envelope, headers?.get(envelope.id)),
        ]);
        sent++;
        this.stats.redispatched++;
        this.logger.warn(
          { txId, commandId: envelope.id, afterMs: entry.delayMs },
          'no result in time: command sent again',
        );
      } catch (err) {
        this.logger.warn(
          { txId, commandId: envelope.id, err: String(err) },
          'sending a command again failed',
        );
      }
      const delayMs = Math.min(MAX_REDISPATCH_DELAY_MS, entry.delayMs * 2);
      this.dispatched.set(envelope.id, { ...entry, dueAt: this.clock.now() + delayMs, delayMs });
    }
    return sent;
  }

  private async sweepLiveRuns(): Promise<number> {
    const idleBefore = this.clock.now() - this.options.redispatchAfterMs;
    let recovered = 0;
    for (const state of ACTIVE_STATES) {
      let cursor: string | undefined;
      do {
        if (this.closed) return recovered;
        // A run created since cannot have been idle that long: the store leaves it out before
        // reading it, so a sweep under load costs the old runs, not every run in flight.
        const filter = { state, createdBefore: idleBefore };
        const page = await this.options.runs.list(filter, SWEEP_PAGE, cursor);
        for (const run of page.runs) {
          if (run.updatedAt > idleBefore || this.dispatchedByRun.has(run.txId)) continue;
          const { sent, fail } = await this.recover(run.txId);
          // Applied once the run's lock is free (apply takes it); a result that came meanwhile
          // makes the failure a late result, ignored.
          let failed = false;
          for (const event of fail) failed = (await this.failUnsendable(run.txId, event)) || failed;
          if (sent || failed) recovered++;
        }
        cursor = page.nextCursor;
      } while (cursor !== undefined);
    }
    if (recovered > 0) this.logger.info({ runs: recovered }, 'recovery sweep recovered idle runs');
    return recovered;
  }

  /**
   * Sends the awaited commands of an idle run again (read fresh, under its lock). Returns whether
   * it sent any, and the events that fail the attempts whose commands it cannot build again and
   * nothing else would end (see `recoverInFlight`): a run never waits silently for a result that
   * cannot come.
   */
  private recover(txId: string): Promise<{ sent: boolean; fail: EngineEvent[] }> {
    return this.mutex.run(txId, async () => {
      const stored = await this.options.runs.get(txId);
      if (!stored || stored.run.updatedAt > this.clock.now() - this.options.redispatchAfterMs) {
        return { sent: false, fail: [] };
      }
      const workflow = await this.workflow(stored.run.workflowId, stored.run.workflowVersion);
      const found = recoverInFlight(workflow, stored.run, this.clock.now());
      const fail: EngineEvent[] = [];
      for (const attempt of found.unsendable) {
        this.stats.unsendableCommands++;
        if (attempt.fail) fail.push(attempt.fail);
        this.logger.warn(
          {
            txId,
            step: attempt.step,
            attempt: attempt.attempt,
            commandId: attempt.commandId,
            err: attempt.error.message,
          },
          attempt.fail
            ? 'no result came and the command cannot be built again (its input mapping fails now): the attempt fails'
            : 'no result came and the command cannot be built again (its input mapping fails now): left to its deadline',
        );
      }
      let commands = found.commands;
      if (commands.length === 0) return { sent: false, fail };
      const headers = this.observer.dispatching?.(stored.run, commands, true);
      if (headers) commands = commands.map((c) => withHeaders(c, headers.get(c.id)));
      const byTopic = new Map<string, Envelope[]>();
      for (const command of commands) {
        const topic = Topics.command(command.payload.worker);
        byTopic.set(topic, [...(byTopic.get(topic) ?? []), command]);
      }
      await Promise.all([...byTopic].map(([topic, envelopes]) => this.options.bus.publish(topic, envelopes)));
      this.stats.redispatched += commands.length;
      this.track(stored.run, commands);
      return { sent: true, fail };
    });
  }

  /** Fails an attempt whose command cannot be sent again (see `recover`); true when it did. */
  private async failUnsendable(txId: string, event: EngineEvent): Promise<boolean> {
    try {
      return (await this.apply(txId, event)) === undefined;
    } catch (err) {
      // The run stays idle: the next sweep finds it again.
      this.logger.warn({ txId, err: String(err) }, 'failing an attempt whose command cannot be sent failed');
      return false;
    }
  }

  /** The compiled workflow, or a promise of it while it is loaded and compiled (once per version). */
  private workflow(
    id: string,
    version: number,
    known?: WorkflowDefinition,
  ): CompiledWorkflow | Promise<CompiledWorkflow> {
    const found = this.compiled.get(id)?.get(version);
    if (found !== undefined) return found;
    const versions = this.compiledVersions(id);
    const compiling = (async () => {
      const definition = known ?? (await this.options.definitions.get(id, version));
      if (!definition) throw new DefinitionNotFoundError(id, version);
      return compileWorkflow(definition);
    })();
    compiling.then(
      (workflow) => versions.set(version, workflow),
      () => versions.delete(version),
    );
    versions.set(version, compiling);
    return compiling;
  }

  private compiledVersions(id: string): Map<number, CompiledWorkflow | Promise<CompiledWorkflow>> {
    let versions = this.compiled.get(id);
    if (versions === undefined) {
      versions = new Map();
      this.compiled.set(id, versions);
    }
    return versions;
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

/** A listener of {@link Orchestrator.onRunMoved}. */
interface MovedListener {
  readonly moved: (txId: string) => void;
  readonly opened: (() => void) | undefined;
}

/** A transition's commands held by local workers (see `Orchestrator.reserveLocal`). */
interface LocalDispatch {
  /** The transition as the store writes it: without the commands run here. */
  readonly written: Transition;
  /** Runs the held commands; called once the transition is committed. */
  run(): void;
  /** Gives their slots back: the transition was not committed. */
  release(): void;
}

function noop(): void {}

function nothingLocal(transition: Transition): LocalDispatch {
  return { written: transition, run: noop, release: noop };
}
