import {
  checkBudget,
  ErrorCode,
  EventType,
  isTerminalRunState,
  RunState,
  StepKind,
  StepStatus,
  mergedCopy,
  shallowCopy,
  type AttemptRecord,
  type Envelope,
  type ErrorInfo,
  type LifecycleEvent,
  type Run,
  type StepCommandPayload,
  type StepDefinition,
  type StepRecord,
  type ParallelStep,
  type TaskStep,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { timerIdFor, type Timer, type TimerPayload } from '../ports/timer';
import { celToJson, type CelActivation, type CelProgram } from '../definition/cel-expression';
import type { CompiledStep, CompiledWorkflow } from '../definition/validate-definition';
import {
  backoffDelayMs,
  DEFAULT_COMPENSATION_RETRY_POLICY,
  DEFAULT_RETRY_POLICY,
  resolveRetryPolicy,
  type ResolvedRetryPolicy,
} from './retry-policy';
import { assertOperatorTransition, assertTransition } from './run-transitions';

/** The outcome a worker reported for one attempt. */
export type AttemptOutcome =
  { readonly ok: true; readonly output: unknown } | { readonly ok: false; readonly error: ErrorInfo };

/** Everything that can happen to a run. */
export type EngineEvent =
  | { readonly type: 'start' }
  | {
      readonly type: 'result';
      readonly step: string;
      readonly commandId: string;
      readonly outcome: AttemptOutcome;
    }
  | { readonly type: 'heartbeat'; readonly step: string; readonly commandId: string }
  | { readonly type: 'timer'; readonly timer: TimerPayload }
  | { readonly type: 'signal'; readonly name: string; readonly payload: unknown }
  | { readonly type: 'cancel'; readonly reason?: string }
  | OperatorEvent;

/**
 * What an operator does to a run stuck in `failed` or `compensation_failed` (SPEC §3: "operator
 * may retry or skip"). These are the only events that move a run out of a terminal state; any other
 * event on a terminal run is ignored, and so is an operator event on a run in any other state.
 *
 * On a `failed` run (a step failed and nothing completed needed undoing), `step` names a step that
 * failed (for a parallel step, the failed step inside it, unless none did: its own condition
 * failed):
 * - `retry_step` runs it again with a fresh attempt series: attempt numbers go on from the last one
 *   (so command ids `<txId>:<step>:<attempt>` never repeat) while the retry budget and the backoff
 *   start over (`StepRecord.attemptBase`); the idempotency key stays `<txId>:<step>`.
 * - `skip_step` marks it `skipped`, records `output` (merged into the context like a result), and
 *   the workflow goes on after it.
 * Either way the run is `running` again, and everything the failure stopped starts again: every
 * other failed step (a parallel step's branches may have failed together) gets a fresh series
 * too, a step whose retry was cancelled starts its next attempt, a wait or sleep starts over.
 *
 * On a `compensation_failed` run, `step` must name the failed compensation (the head of
 * `compensationQueue`): `retry_step` gives the compensation a fresh attempt series (the same
 * way), `skip_step` marks it `skipped` and unwinding goes on with the rest of the queue (an output
 * is ignored). The run is `compensating` again (`cancelling` when a cancel began the unwinding).
 * `resume_compensation` is `retry_step` on that head, or `skip_step` with `skip: true`.
 */
export type OperatorEvent =
  | { readonly type: 'retry_step'; readonly step: string }
  | { readonly type: 'skip_step'; readonly step: string; readonly output?: unknown }
  | { readonly type: 'resume_compensation'; readonly skip?: boolean };

/** True for the events only an operator sends (see {@link OperatorEvent}). */
export function isOperatorEvent(event: EngineEvent): event is OperatorEvent {
  return event.type === 'retry_step' || event.type === 'skip_step' || event.type === 'resume_compensation';
}

/**
 * The engine's answer: the next run and everything the transition produces, which the
 * orchestrator commits in one atomic write (`RunStore.commit`); or why nothing changed.
 */
export interface Decision {
  readonly run: Run;
  /** `step.command` envelopes to send, each on `Topics.command(payload.worker)`. */
  readonly commands: readonly Envelope<StepCommandPayload>[];
  /** The lifecycle events of the transition, in order (one `workflow.transitioned` message carries them). */
  readonly lifecycle: readonly LifecycleEvent[];
  /** Timers to add or replace, by id. */
  readonly schedule: readonly Timer[];
  /** Ids of timers to remove (never also in `schedule`). */
  readonly cancel: readonly string[];
  /** Steps whose records changed: a store writes these and the run's header, nothing else. */
  readonly changedSteps: readonly string[];
  /**
   * Command ids of attempts whose work the run no longer wants, so their workers may be asked to
   * stop (`step.cancel`): the task attempts still running when this transition began the run's
   * unwinding (a cancel, a failure while parallel branches run), which the run still awaits (their
   * effects may have happened); and the attempts it ended without their result (a timeout, a
   * heartbeat timeout, an operator action), whose late result will be ignored. Not part of the
   * atomic write: a request a crash may lose. Absent when none.
   */
  readonly abandoned?: readonly string[];
  /** Set when the event changed nothing (duplicate or late result, stale timer…): nothing to write. */
  readonly ignored?: string;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

const NOTHING: Pick<Decision, 'commands' | 'lifecycle' | 'schedule' | 'cancel' | 'changedSteps'> =
  Object.freeze({
    commands: Object.freeze([]),
    lifecycle: Object.freeze([]),
    schedule: Object.freeze([]),
    cancel: Object.freeze([]),
    changedSteps: Object.freeze([]),
  });

/** A decision that changes nothing, with its reason. */
function ignore(run: Run, reason: string): Decision {
  return { run, ...NOTHING, ignored: reason };
}

/** Parameters of {@link createRun}. */
export interface CreateRunParams {
  readonly txId: string;
  readonly workflow: WorkflowDefinition;
  readonly input: Record<string, unknown>;
  readonly now: number;
  readonly idempotencyKey?: string;
  readonly traceHeaders?: Record<string, string>;
}

/**
 * What one agent attempt spent, as its `step.completed`, `step.retrying` or `step.failed` event
 * carries it (`usage`): the metrics count tokens and cost from these events.
 */
interface AttemptUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly costUsd: number;
}

/** Most early signals of one name a run keeps. */
export const MAX_BUFFERED_SIGNALS = 100;

/**
 * How often a heartbeat of a step without a heartbeat timeout is recorded (`heartbeatAt`): no
 * deadline depends on it, but a long step that beats is not taken for a stuck one.
 */
export const UNTIMED_HEARTBEAT_EVERY_MS = 60_000;

/** `<txId>:<step>:<attempt>`, or `<txId>:<step>:undo:<attempt>` for a compensation. */
export function commandIdFor(txId: string, step: string, attempt: number, compensation = false): string {
  return `${txId}:${step}:${compensation ? 'undo:' : ''}${attempt}`;
}

/**
 * Whether `commandId` is one {@link commandIdFor} makes for `txId` and `step` (it starts
 * `<txId>:<step>:`), checked without building that prefix: once per result.
 */
export function isCommandIdOf(commandId: string, txId: string, step: string): boolean {
  const stepAt = txId.length + 1;
  const end = stepAt + step.length;
  return (
    commandId.length > end &&
    commandId.charCodeAt(txId.length) === COLON &&
    commandId.charCodeAt(end) === COLON &&
    commandId.slice(0, txId.length) === txId &&
    commandId.slice(stepAt, end) === step
  );
}

const COLON = 0x3a;

/** The key a worker sees for every attempt of one step of one run (SPEC §4). */
export function idempotencyKeyFor(txId: string, step: string, compensation = false): string {
  return compensation ? `${txId}:${step}:undo` : `${txId}:${step}`;
}

function collectSteps(steps: readonly StepDefinition[], into: Record<string, StepRecord>): void {
  for (const step of steps) {
    into[step.name] = { name: step.name, status: StepStatus.Pending, attempt: 0, attempts: [] };
    if (step.kind === StepKind.Parallel) for (const branch of step.branches) collectSteps(branch, into);
  }
}

/** A new run in `pending`; feed it a `start` event to begin. */
export function createRun(params: CreateRunParams): Run {
  const steps: Record<string, StepRecord> = {};
  collectSteps(params.workflow.steps, steps);
  return {
    txId: params.txId,
    workflowId: params.workflow.id,
    workflowVersion: params.workflow.version,
    state: RunState.Pending,
    input: params.input,
    // Not `{ ...input }`: a spread copy that is later frozen gets a hidden class of its own in V8
    // (see shallowCopy), one per run.
    context: shallowCopy(params.input),
    steps,
    createdAt: params.now,
    updatedAt: params.now,
    signals: {},
    completedCount: 0,
    outputCount: 0,
    ...(params.idempotencyKey === undefined ? {} : { idempotencyKey: params.idempotencyKey }),
    ...(params.traceHeaders === undefined ? {} : { traceHeaders: params.traceHeaders }),
  };
}

/**
 * The saga engine: a pure function of (workflow, run, event, now). No I/O, no clock, no
 * randomness; the input run is never mutated (it may be shared with a store), so the same call
 * always gives the same decision. The orchestrator commits the decision (the run, its commands,
 * timers and lifecycle events) in one atomic write with compare-and-set on the run's version.
 */
export function decide(workflow: CompiledWorkflow, run: Run, event: EngineEvent, now: number): Decision {
  if (isTerminalRunState(run.state) && !isOperatorEvent(event)) return ignore(run, `run is ${run.state}`);
  const draft = new Draft(workflow, run, now);
  const ignored = draft.apply(event);
  if (ignored !== undefined) return ignore(run, ignored);
  draft.settle();
  draft.run.updatedAt = now;
  const schedule: Timer[] = [];
  const cancel: string[] = [];
  for (const [id, timer] of draft.timers) {
    if (timer) schedule.push(timer);
    else cancel.push(id);
  }
  return {
    run: draft.run,
    commands: draft.commands,
    lifecycle: draft.lifecycle,
    schedule,
    cancel,
    changedSteps: changedSteps(run, draft.run),
    abandoned: abandonedAttempts(run, draft.run, event),
  };
}

const NO_IDS: readonly string[] = Object.freeze([]);

/** A failure or a cancel has begun the run's unwinding (see {@link Decision.abandoned}). */
function isUnwinding(run: Run): boolean {
  return run.error !== undefined || run.cancelRequested === true;
}

/**
 * What a transition stops waiting for, or no longer wants (see {@link Decision.abandoned}): the
 * attempts in flight it ended without their result (a timeout, a heartbeat timeout, an operator
 * action), and, when it began the unwinding, the task attempts still running then.
 */
function abandonedAttempts(before: Run, after: Run, event: EngineEvent): readonly string[] {
  const unwound = !isUnwinding(before) && isUnwinding(after);
  // Only a timer or an operator ends an attempt without its result (a result ends its own).
  const ended = event.type === 'timer' || isOperatorEvent(event);
  if (!unwound && !ended) return NO_IDS;
  const ids: string[] = [];
  if (unwound) for (const id of awaitedCommandIds(after, false)) ids.push(id);
  if (ended) {
    const still = new Set(awaitedCommandIds(after));
    for (const id of awaitedCommandIds(before)) if (!still.has(id)) ids.push(id);
  }
  return ids.length === 0 ? NO_IDS : ids;
}

/**
 * The command ids a run awaits results of: its task attempts in flight, and its compensations in
 * flight unless `compensations` is false. Only a task's attempts are listed in its record, so a
 * parallel step, whose record runs too, has none.
 */
export function awaitedCommandIds(run: Run, compensations = true): string[] {
  const ids: string[] = [];
  for (const name in run.steps) {
    const record = run.steps[name] as StepRecord;
    if (record.status === StepStatus.Running && record.attempts.length > 0) {
      ids.push(commandIdFor(run.txId, name, record.attempt));
    } else if (compensations && record.compensation?.status === 'running') {
      ids.push(commandIdFor(run.txId, name, record.compensation.attempt, true));
    }
  }
  return ids;
}

/**
 * The commands a run has in flight (running task attempts and compensations), built again from
 * the run: what an orchestrator sends once more when their results never came (a broker that
 * forgot a message, a writer that died between its write and its publish). Same command ids as
 * the originals, so whichever result arrives first counts and the other is ignored. The input is
 * computed from the current context; the original's input may have differed only when a
 * parallel branch finished meanwhile. An attempt whose input mapping now fails has no command
 * here: {@link recoverInFlight} says what to do about it.
 */
export function inFlightCommands(
  workflow: CompiledWorkflow,
  run: Run,
  now: number,
): Envelope<StepCommandPayload>[] {
  return recoverInFlight(workflow, run, now).commands;
}

/** A running attempt whose command cannot be built again (see {@link recoverInFlight}). */
export interface UnsendableAttempt {
  readonly step: string;
  readonly attempt: number;
  readonly commandId: string;
  /** Why: its input mapping's error on the run's current context (`EXPRESSION_ERROR`). */
  readonly error: ErrorInfo;
  /**
   * The event that fails the attempt with `error` (a failed result of its command), when nothing
   * else would ever end the wait for it; absent when a deadline of the attempt's own will (its
   * timeout, heartbeat timeout, or schedule-to-start timeout while no worker has taken it).
   */
  readonly fail?: EngineEvent;
}

/** What {@link recoverInFlight} finds in a run. */
export interface InFlightRecovery {
  /** The commands to send again, as {@link inFlightCommands} gives them. */
  readonly commands: Envelope<StepCommandPayload>[];
  /** Running attempts whose command cannot be built again, so cannot be sent again. */
  readonly unsendable: UnsendableAttempt[];
}

/**
 * What an orchestrator does for a run whose results did not come: the commands to send again
 * ({@link inFlightCommands}), and the running attempts whose command it cannot build again, their
 * input mapping failing on the current context (a parallel branch that finished since the
 * dispatch changed what it reads). Such an attempt cannot be answered if its command was lost,
 * and nothing lets a run stop waiting for an attempt in flight, a cancel neither: unless a deadline
 * of its own ends it, it fails through `fail`, with the error its dispatch would fail with now
 * (non-retryable, so the step fails and the run unwinds as after any failure). Its worker may
 * still be at work (the orchestrator cannot tell a lost command from a slow one): as after a
 * timeout, its late result is then ignored.
 */
export function recoverInFlight(workflow: CompiledWorkflow, run: Run, now: number): InFlightRecovery {
  if (isTerminalRunState(run.state)) return { commands: [], unsendable: [] };
  const draft = new Draft(workflow, run, now);
  const unsendable = draft.rebuildCommands();
  return { commands: draft.commands, unsendable };
}

/** Names of the step records `next` changed (the engine replaces, never mutates, nested values). */
function changedSteps(before: Run, next: Run): string[] {
  const changed: string[] = [];
  for (const name in next.steps) {
    const record = next.steps[name] as StepRecord;
    const old = before.steps[name];
    // A record the draft did not copy is the caller's own object: unchanged.
    if (old !== record && (!old || !shallowEqual(old, record))) changed.push(name);
  }
  return changed;
}

function shallowEqual(a: object, b: object): boolean {
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  let count = 0;
  for (const key in right) if (Object.hasOwn(right, key)) count++;
  for (const key in left) {
    if (!Object.hasOwn(left, key)) continue;
    count--;
    const x = left[key];
    const y = right[key];
    if (x === y) continue;
    // A compensation record may be replaced by an equal one: compare its fields.
    if (key === 'compensation' && typeof x === 'object' && typeof y === 'object' && x && y) {
      if (shallowEqual(x, y)) continue;
    }
    return false;
  }
  return count === 0;
}

/** When the current attempt last showed life: its last recorded heartbeat, else its start. */
function lastSignOfLife(record: StepRecord): number | undefined {
  return record.heartbeatAt ?? record.attempts[record.attempts.length - 1]?.startedAt;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function closeLast(
  attempts: AttemptRecord[],
  now: number,
  outcome: AttemptRecord['outcome'],
  error?: ErrorInfo,
) {
  const last = attempts[attempts.length - 1];
  if (!last || last.endedAt !== undefined) return attempts;
  const closed = shallowCopy(last);
  closed.endedAt = now;
  closed.outcome = outcome;
  if (error) closed.error = error;
  const copy = attempts.slice();
  copy[copy.length - 1] = closed;
  return copy;
}

/** One decision in the making: a draft run plus what it produced so far. */
class Draft {
  readonly run: Run;
  readonly commands: Envelope<StepCommandPayload>[] = [];
  readonly lifecycle: LifecycleEvent[] = [];
  /** Timer changes by id, the last one winning: a Timer to schedule, null to cancel. */
  readonly timers = new Map<string, Timer | null>();
  constructor(
    private readonly workflow: CompiledWorkflow,
    /** The caller's run: never changed; a step record still shared with it was not copied yet. */
    private readonly original: Run,
    private readonly now: number,
  ) {
    // Copy-on-write: a step record is copied the first time the draft takes it to change it
    // (`record`), so a decision costs the steps it touches, not every step of the workflow; arrays,
    // the context and compensation records are replaced, never mutated.
    // `shallowCopy`, not spread: see there.
    this.run = shallowCopy(original);
    this.run.steps = shallowCopy(original.steps);
  }

  /**
   * Adds the command of every running attempt and compensation (see {@link recoverInFlight});
   * returns the attempts whose command cannot be built again.
   */
  rebuildCommands(): UnsendableAttempt[] {
    const unsendable: UnsendableAttempt[] = [];
    for (const name in this.run.steps) {
      const record = this.run.steps[name] as StepRecord;
      const compiled = this.workflow.steps.get(name);
      if (compiled?.definition.kind !== StepKind.Task) continue;
      const definition = compiled.definition;
      const compensation = record.compensation;
      if (compensation?.status === 'running') {
        this.command(
          definition.compensation as string,
          name,
          compensation.attempt,
          true,
          this.run.context,
          this.compensationTimeoutMs(definition),
          undefined,
        );
      } else if (record.status === StepStatus.Running) {
        let input: unknown;
        try {
          input = this.input(compiled);
        } catch (err) {
          // Its dispatch computed it: what the mapping reads changed since (a parallel branch).
          unsendable.push(this.unsendable(compiled, record, err));
          continue;
        }
        this.command(
          definition.worker,
          name,
          record.attempt,
          false,
          input,
          definition.timeoutMs ?? this.workflow.definition.defaults?.timeoutMs,
          this.heartbeatTimeoutMs(definition),
          this.scheduleToStartTimeoutMs(definition),
        );
      }
    }
    return unsendable;
  }

  private unsendable(compiled: CompiledStep, record: StepRecord, err: unknown): UnsendableAttempt {
    const definition = compiled.definition as TaskStep;
    const commandId = commandIdFor(this.run.txId, record.name, record.attempt);
    const cause = expressionError('input', compiled.input as CelProgram, err);
    const error: ErrorInfo = {
      ...cause,
      message: `no result came and its command cannot be sent again: ${cause.message}`,
      details: { commandId },
    };
    const last = record.attempts[record.attempts.length - 1];
    const deadline =
      (definition.timeoutMs ?? this.workflow.definition.defaults?.timeoutMs) !== undefined ||
      this.heartbeatTimeoutMs(definition) !== undefined ||
      (this.scheduleToStartTimeoutMs(definition) !== undefined && last?.pickedUpAt === undefined);
    return {
      step: record.name,
      attempt: record.attempt,
      commandId,
      error,
      ...(deadline
        ? {}
        : { fail: { type: 'result', step: record.name, commandId, outcome: { ok: false, error } } }),
    };
  }

  // ---- events -------------------------------------------------------------------------------

  /** Applies the event; returns a reason when it changes nothing. */
  apply(event: EngineEvent): string | undefined {
    switch (event.type) {
      case 'start':
        if (this.run.state !== RunState.Pending) return 'run already started';
        this.transition(RunState.Running);
        this.run.startedAt = this.now;
        this.emit(EventType.WorkflowStarted, { workflowVersion: this.run.workflowVersion });
        return undefined;
      case 'result':
        return this.onResult(event.step, event.commandId, event.outcome);
      case 'heartbeat':
        return this.onHeartbeat(event.step, event.commandId);
      case 'timer':
        return this.onTimer(event.timer);
      case 'signal':
        return this.onSignal(event.name, event.payload);
      case 'cancel':
        if (this.run.state !== RunState.Pending && !this.isForward()) return `run is ${this.run.state}`;
        // A run already unwinding a failure finishes that unwinding; a cancel adds nothing to it.
        if (this.isStopping()) return 'run is already unwinding a failure';
        this.run.cancelRequested = true;
        this.transition(RunState.Cancelling);
        return undefined;
      case 'retry_step':
      case 'skip_step':
      case 'resume_compensation':
        return this.onOperator(event);
    }
  }

  private onResult(name: string, commandId: string, outcome: AttemptOutcome): string | undefined {
    const record = this.writable(name);
    const compiled = this.workflow.steps.get(name);
    if (!record || compiled?.definition.kind !== StepKind.Task) return `unknown task step ${name}`;
    const task = compiled.definition;
    const compensation = record.compensation;
    if (compensation && commandId === commandIdFor(this.run.txId, name, compensation.attempt, true)) {
      if (compensation.status !== 'running') return 'late or duplicate compensation result';
      if (outcome.ok) this.completeCompensation(record);
      else this.failCompensationAttempt(task, record, outcome.error, 'failed');
      return undefined;
    }
    if (
      record.status !== StepStatus.Running ||
      commandId !== commandIdFor(this.run.txId, name, record.attempt)
    ) {
      return 'late or duplicate result';
    }
    if (outcome.ok) this.completeTask(task, record, outcome.output);
    else this.failAttempt(task, record, outcome.error, 'failed');
    return undefined;
  }

  private onHeartbeat(name: string, commandId: string): string | undefined {
    const record = this.writable(name);
    const compiled = this.workflow.steps.get(name);
    if (!record || compiled?.definition.kind !== StepKind.Task) return `unknown task step ${name}`;
    if (
      record.status !== StepStatus.Running ||
      commandId !== commandIdFor(this.run.txId, name, record.attempt)
    ) {
      return 'heartbeat of an attempt that is not running';
    }
    // The first sign of life of an attempt with a schedule-to-start deadline: a worker took it.
    const pickedUp = this.notePickedUp(compiled.definition, record);
    const timeoutMs = this.heartbeatTimeoutMs(compiled.definition);
    if (timeoutMs === undefined) {
      // No deadline to move, but a sign of life what watches runs reads (the event-monitor's
      // stuck-run watchdog): recorded, a write each, at most once per UNTIMED_HEARTBEAT_EVERY_MS.
      const lastSign = lastSignOfLife(record);
      if (lastSign !== undefined && this.now - lastSign < UNTIMED_HEARTBEAT_EVERY_MS) {
        return pickedUp
          ? undefined
          : 'step has no heartbeat timeout: a sign of life is recorded once a minute';
      }
      record.heartbeatAt = this.now;
      return undefined;
    }
    record.heartbeatAt = this.now;
    this.schedule({ kind: 'heartbeat', step: name, attempt: record.attempt }, this.now + timeoutMs);
    return undefined;
  }

  /** Records that a worker took the current attempt (once), ending its schedule-to-start deadline. */
  private notePickedUp(definition: TaskStep, record: StepRecord): boolean {
    if (this.scheduleToStartTimeoutMs(definition) === undefined) return false;
    const last = record.attempts[record.attempts.length - 1];
    if (!last || last.pickedUpAt !== undefined || last.endedAt !== undefined) return false;
    const attempts = record.attempts.slice();
    attempts[attempts.length - 1] = { ...last, pickedUpAt: this.now };
    record.attempts = attempts;
    this.unschedule({ kind: 'start', step: record.name, attempt: record.attempt });
    return true;
  }

  private onTimer(timer: TimerPayload): string | undefined {
    const record = this.writable(timer.step);
    const compiled = this.workflow.steps.get(timer.step);
    if (!record || !compiled) return `unknown step ${timer.step}`;
    const definition = compiled.definition;
    if (timer.compensation) {
      if (definition.kind !== StepKind.Task) return 'stale timer';
      const compensation = record.compensation;
      if (
        timer.kind === 'retry' &&
        compensation?.status === 'retrying' &&
        compensation.attempt + 1 === timer.attempt
      ) {
        this.startCompensationAttempt(definition, record, timer.attempt);
        return undefined;
      }
      if (
        timer.kind === 'timeout' &&
        compensation?.status === 'running' &&
        compensation.attempt === timer.attempt
      ) {
        this.failCompensationAttempt(
          definition,
          record,
          timeoutError(ErrorCode.Timeout, 'compensation'),
          'timed_out',
        );
        return undefined;
      }
      return 'stale timer';
    }
    switch (timer.kind) {
      case 'start': {
        if (definition.kind !== StepKind.Task || record.status !== StepStatus.Running) return 'stale timer';
        if (record.attempt !== timer.attempt) return 'stale timer';
        const last = record.attempts[record.attempts.length - 1];
        if (last?.pickedUpAt !== undefined) return 'stale timer: a worker took the command';
        const afterMs = this.scheduleToStartTimeoutMs(definition) ?? 0;
        this.failAttempt(
          definition,
          record,
          {
            code: ErrorCode.NoWorker,
            message: `no worker took ${definition.worker} within ${afterMs} ms (none hosts it, or every replica is busy or gone)`,
            retryable: false,
            details: { worker: definition.worker, scheduleToStartTimeoutMs: afterMs },
          },
          'timed_out',
        );
        return undefined;
      }
      case 'retry':
        if (definition.kind !== StepKind.Task || record.status !== StepStatus.Retrying) return 'stale timer';
        if (record.attempt + 1 !== timer.attempt) return 'stale timer';
        this.startAttempt(compiled, record, timer.attempt);
        return undefined;
      case 'timeout':
      case 'heartbeat':
        if (definition.kind !== StepKind.Task || record.status !== StepStatus.Running) return 'stale timer';
        if (record.attempt !== timer.attempt) return 'stale timer';
        if (timer.kind === 'heartbeat' && this.heartbeatStillFresh(definition, record)) {
          // The timer was claimed just before a heartbeat replaced it: the heartbeat wins.
          return 'stale heartbeat timer';
        }
        this.failAttempt(
          definition,
          record,
          timer.kind === 'timeout'
            ? timeoutError(ErrorCode.Timeout, 'attempt')
            : timeoutError(ErrorCode.HeartbeatTimeout, 'heartbeat'),
          'timed_out',
        );
        return undefined;
      case 'sleep':
        if (definition.kind !== StepKind.Sleep || record.status !== StepStatus.Waiting) return 'stale timer';
        if (timer.attempt !== record.attempt + 1) return 'stale timer';
        this.completeStep(record, undefined, undefined, undefined, { kind: StepKind.Sleep });
        return undefined;
      case 'wait':
        if (definition.kind !== StepKind.Wait || record.status !== StepStatus.Waiting) return 'stale timer';
        if (timer.attempt !== record.attempt + 1) return 'stale timer';
        this.failStep(
          record,
          {
            code: ErrorCode.WaitTimeout,
            message: `signal "${definition.signal}" did not arrive within ${definition.timeoutMs} ms`,
            retryable: false,
          },
          undefined,
          { kind: StepKind.Wait, signal: definition.signal },
        );
        return undefined;
    }
  }

  private heartbeatStillFresh(definition: TaskStep, record: StepRecord): boolean {
    const timeoutMs = this.heartbeatTimeoutMs(definition);
    const lastSign = lastSignOfLife(record);
    return timeoutMs !== undefined && lastSign !== undefined && this.now < lastSign + timeoutMs;
  }

  private onSignal(name: string, payload: unknown): string | undefined {
    for (const [stepName, compiled] of this.workflow.steps) {
      const definition = compiled.definition;
      const record = this.run.steps[stepName];
      if (
        definition.kind === StepKind.Wait &&
        definition.signal === name &&
        record?.status === StepStatus.Waiting
      ) {
        if (definition.timeoutMs !== undefined) {
          this.unschedule({ kind: 'wait', step: stepName, attempt: record.attempt + 1 });
        }
        this.completeStep(this.record(stepName), definition.output, payload, undefined, {
          kind: StepKind.Wait,
          signal: name,
        });
        return undefined;
      }
    }
    // Nobody waits for it yet: keep it, so a signal that arrives early is not lost (SPEC §2).
    const buffered = this.run.signals[name] ?? [];
    if (buffered.length >= MAX_BUFFERED_SIGNALS) return `signal buffer for "${name}" is full`;
    this.run.signals = { ...this.run.signals, [name]: [...buffered, payload] };
    return undefined;
  }

  // ---- operator actions: the only ways out of a terminal state ----------------------------------

  private onOperator(event: OperatorEvent): string | undefined {
    const state = this.run.state;
    if (state !== RunState.Failed && state !== RunState.CompensationFailed) {
      return `run is ${state}: operator actions apply to a failed or compensation_failed run`;
    }
    if (event.type === 'resume_compensation') {
      if (state !== RunState.CompensationFailed) return `run is ${state}: no compensation failed`;
      return this.resumeCompensation(event.skip === true);
    }
    const record = this.writable(event.step);
    const compiled = this.workflow.steps.get(event.step);
    if (!record || !compiled) return `unknown step ${event.step}`;
    if (state === RunState.CompensationFailed) {
      const head = this.run.compensationQueue?.[0];
      if (event.step !== head) {
        return `the compensation of step ${event.step} did not fail: the failed one is ${head ?? 'none'}'s`;
      }
      return this.resumeCompensation(event.type === 'skip_step');
    }
    if (record.status !== StepStatus.Failed) return `step ${event.step} is ${record.status}, not failed`;
    const definition = compiled.definition;
    // A parallel step fails through a step inside it, which is the one to retry or skip; or by
    // itself (its own condition could not be evaluated), and then it is retried or skipped itself.
    if (definition.kind === StepKind.Parallel && this.failedInside(definition)) {
      return `step ${event.step} is a parallel step: retry or skip the failed step inside it`;
    }
    this.reopen(record, event);
    return undefined;
  }

  /** True when a step of the parallel step's branches (nested ones included) failed. */
  private failedInside(parallel: ParallelStep): boolean {
    const inside: Record<string, StepRecord> = {};
    for (const branch of parallel.branches) collectSteps(branch, inside);
    return Object.keys(inside).some((name) => this.run.steps[name]?.status === StepStatus.Failed);
  }

  /** A failed run goes on: see {@link OperatorEvent}. `settle` then starts what was rewound. */
  private reopen(target: StepRecord, event: Extract<OperatorEvent, { step: string }>): void {
    this.transition(RunState.Running, true);
    if (this.run.error !== undefined) delete this.run.error;
    const attempt = target.attempt || undefined;
    if (event.type === 'skip_step') {
      const definition = this.compiled(target.name).definition;
      this.endStep(target, StepStatus.Skipped);
      const outputKey =
        definition.kind === StepKind.Task || definition.kind === StepKind.Wait
          ? definition.output
          : undefined;
      this.recordOutput(target, outputKey, event.output);
      this.emit(EventType.StepSkipped, { operator: true }, target.name, attempt);
    } else {
      this.emit(
        EventType.StepRetrying,
        { operator: true, delayMs: 0, ...(target.error ? { error: target.error } : {}) },
        target.name,
        attempt,
      );
    }
    for (const record of Object.values(this.run.steps)) {
      if (record.status === StepStatus.Failed || record.status === StepStatus.Cancelled)
        this.rewind(this.record(record.name));
    }
  }

  /** Puts a step the failure failed or stopped back where advancing starts it again. */
  private rewind(record: StepRecord): void {
    const definition = this.compiled(record.name).definition;
    if (record.endedAt !== undefined) delete record.endedAt;
    if (definition.kind === StepKind.Parallel) {
      // Its branches are rewound step by step; one whose condition failed starts over.
      record.status = record.startedAt === undefined ? StepStatus.Pending : StepStatus.Running;
      return;
    }
    record.status = StepStatus.Pending;
    if (definition.kind === StepKind.Task) {
      // A fresh series: the next attempt is attempt + 1, with the whole retry budget.
      if (record.attempt > 0) record.attemptBase = record.attempt;
      if (record.heartbeatAt !== undefined) delete record.heartbeatAt;
      // Partial effects of a failed run's step (whichever attempt of its series declared them)
      // are never undone: it has no compensation, or the run would have compensated. The new
      // series starts without them and is judged on its own attempts.
      if (record.partialEffects !== undefined) delete record.partialEffects;
      if (record.completedSeq !== undefined) delete record.completedSeq;
    } else if (record.startedAt !== undefined) {
      // A wait or sleep starts over; its timers carry attempt + 1, so the old ones are stale.
      record.attempt += 1;
    }
  }

  /** A compensation_failed run unwinds again: its failed compensation is retried or skipped. */
  private resumeCompensation(skip: boolean): string | undefined {
    const queue = this.run.compensationQueue ?? [];
    const record = queue[0] === undefined ? undefined : this.writable(queue[0]);
    const compensation = record?.compensation;
    if (!record || compensation?.status !== 'failed') return 'no failed compensation to resume';
    this.transition(this.run.cancelRequested ? RunState.Cancelling : RunState.Compensating, true);
    const error = this.run.error ? { error: this.run.error } : {};
    if (skip) {
      record.compensation = { ...compensation, status: 'skipped' };
      this.emit(
        EventType.StepSkipped,
        { operator: true, compensation: true },
        record.name,
        compensation.attempt,
      );
      this.run.compensationQueue = queue.slice(1);
      this.emit(EventType.WorkflowCompensating, { steps: queue.slice(1), operator: true, ...error });
      return undefined;
    }
    this.emit(EventType.WorkflowCompensating, { steps: queue, operator: true, ...error });
    record.compensation = { ...compensation, attemptBase: compensation.attempt };
    this.startCompensationAttempt(
      this.compiled(record.name).definition as TaskStep,
      record,
      compensation.attempt + 1,
    );
    return undefined;
  }

  // ---- settling: what happens next after an event ---------------------------------------------

  /** Moves the run as far as it can go: start steps, finish, or unwind. */
  settle(): void {
    if (isTerminalRunState(this.run.state) || this.run.state === RunState.Pending) return;
    if (this.run.compensationQueue !== undefined) {
      this.continueCompensation();
      return;
    }
    if (!this.isStopping()) {
      const progress = this.advance(this.workflow.definition.steps);
      if (progress === 'done') {
        this.transition(RunState.Completed);
        this.emit(EventType.WorkflowCompleted, { durationMs: this.runDurationMs() });
        return;
      }
      if (!this.isStopping()) {
        this.updateActivityState();
        return;
      }
    }
    this.stopActive();
    if (this.hasAttemptInFlight()) {
      // A failed or cancelled run still waits for attempts in flight: their effects may have
      // happened, and a completed one must be compensated.
      if (this.run.state === RunState.Waiting) this.transition(RunState.Running);
      return;
    }
    this.beginUnwinding();
  }

  private isForward(): boolean {
    return this.run.state === RunState.Running || this.run.state === RunState.Waiting;
  }

  private isStopping(): boolean {
    return isUnwinding(this.run);
  }

  private advance(steps: readonly StepDefinition[]): 'done' | 'blocked' | 'failed' {
    for (const definition of steps) {
      if (this.isStopping()) return 'failed';
      const record = this.record(definition.name);
      if (record.status === StepStatus.Pending) this.startStep(this.compiled(definition.name), record);
      switch (record.status) {
        case StepStatus.Completed:
        case StepStatus.Skipped:
          continue;
        case StepStatus.Failed:
        case StepStatus.Cancelled:
          return 'failed';
      }
      if (definition.kind !== StepKind.Parallel) return 'blocked';
      const branches = definition.branches.map((branch) => this.advance(branch));
      if (branches.includes('failed')) return 'failed';
      if (branches.some((b) => b !== 'done')) return 'blocked';
      this.completeStep(record, undefined, undefined);
    }
    return 'done';
  }

  private updateActivityState(): void {
    let waiting = false;
    for (const name in this.run.steps) {
      const record = this.run.steps[name] as StepRecord;
      if (record.status === StepStatus.Running || record.status === StepStatus.Retrying) {
        if (this.compiled(name).definition.kind === StepKind.Task) {
          if (this.run.state === RunState.Waiting) this.transition(RunState.Running);
          return;
        }
      } else if (record.status === StepStatus.Waiting) {
        waiting = true;
      }
    }
    if (waiting && this.run.state === RunState.Running) {
      this.transition(RunState.Waiting);
      this.emit(EventType.WorkflowWaiting, {});
    }
  }

  private hasAttemptInFlight(): boolean {
    for (const name in this.run.steps) {
      const record = this.run.steps[name] as StepRecord;
      if (record.status === StepStatus.Running && this.compiled(name).definition.kind === StepKind.Task)
        return true;
    }
    return false;
  }

  /** Stops what has no effects in flight: waits, sleeps and pending retries. */
  private stopActive(): void {
    for (const name in this.run.steps) {
      const status = (this.run.steps[name] as StepRecord).status;
      const kind = this.compiled(name).definition.kind;
      if (
        status !== StepStatus.Waiting &&
        status !== StepStatus.Retrying &&
        !(status === StepStatus.Running && kind === StepKind.Parallel)
      ) {
        continue;
      }
      const record = this.record(name);
      if (record.status === StepStatus.Waiting) {
        const definition = this.compiled(name).definition;
        if (
          definition.kind === StepKind.Sleep ||
          (definition.kind === StepKind.Wait && definition.timeoutMs !== undefined)
        ) {
          this.unschedule({
            kind: definition.kind === StepKind.Sleep ? 'sleep' : 'wait',
            step: name,
            attempt: record.attempt + 1,
          });
        }
        this.endStep(record, StepStatus.Cancelled);
      } else if (record.status === StepStatus.Retrying) {
        this.unschedule({ kind: 'retry', step: name, attempt: record.attempt + 1 });
        this.endStep(record, StepStatus.Cancelled);
      } else if (record.status === StepStatus.Running && kind === StepKind.Parallel) {
        this.endStep(record, this.run.cancelRequested ? StepStatus.Cancelled : StepStatus.Failed);
      }
    }
  }

  private beginUnwinding(): void {
    const queue = Object.values(this.run.steps)
      .filter((record) => {
        const definition = this.compiled(record.name).definition;
        if (definition.kind !== StepKind.Task || definition.compensation === undefined) return false;
        return record.status === StepStatus.Completed || record.partialEffects === true;
      })
      .sort((a, b) => (b.completedSeq ?? 0) - (a.completedSeq ?? 0))
      .map((record) => record.name);
    const cancelling = this.run.cancelRequested === true;
    if (queue.length === 0) {
      if (cancelling) {
        this.transition(RunState.Cancelled);
        this.emit(EventType.WorkflowCancelled, { durationMs: this.runDurationMs() });
      } else {
        this.transition(RunState.Failed);
        this.emit(EventType.WorkflowFailed, { error: this.run.error, durationMs: this.runDurationMs() });
      }
      return;
    }
    this.run.compensationQueue = queue;
    if (!cancelling) this.transition(RunState.Compensating);
    this.emit(EventType.WorkflowCompensating, {
      steps: queue,
      ...(this.run.error ? { error: this.run.error } : {}),
    });
    this.continueCompensation();
  }

  private continueCompensation(): void {
    let queue = this.run.compensationQueue ?? [];
    while (queue.length > 0) {
      const name = queue[0] as string;
      const record = this.record(name);
      const definition = this.compiled(name).definition as TaskStep;
      const compensation = record.compensation;
      if (!compensation) {
        this.startCompensationAttempt(definition, record, 1);
        return;
      }
      if (compensation.status === 'running' || compensation.status === 'retrying') return;
      if (compensation.status === 'failed') {
        this.transition(RunState.CompensationFailed);
        this.emit(EventType.WorkflowStuck, {
          remaining: queue,
          error: compensation.error,
          durationMs: this.runDurationMs(),
        });
        return;
      }
      queue = queue.slice(1);
      this.run.compensationQueue = queue;
    }
    if (this.run.cancelRequested) {
      this.transition(RunState.Cancelled);
      this.emit(EventType.WorkflowCancelled, { durationMs: this.runDurationMs() });
    } else {
      this.transition(RunState.Compensated);
      this.emit(EventType.WorkflowCompensated, { durationMs: this.runDurationMs() });
    }
  }

  // ---- steps --------------------------------------------------------------------------------

  private startStep(compiled: CompiledStep, record: StepRecord): void {
    const definition = compiled.definition;
    // A step an operator action restarts was past its condition already (it had started).
    if (compiled.when && record.startedAt === undefined) {
      let verdict: unknown;
      try {
        verdict = compiled.when.evaluate(this.activation(compiled));
      } catch (err) {
        this.failStep(record, expressionError('when', compiled.when, err));
        return;
      }
      if (typeof verdict !== 'boolean') {
        this.failStep(record, expressionError('when', compiled.when, new Error('did not yield a bool')));
        return;
      }
      if (!verdict) {
        this.endStep(record, StepStatus.Skipped);
        this.emit(EventType.StepSkipped, {}, record.name);
        return;
      }
    }
    switch (definition.kind) {
      case StepKind.Task:
        this.startAttempt(compiled, record, record.attempt + 1);
        return;
      case StepKind.Parallel:
        record.status = StepStatus.Running;
        record.startedAt = this.now;
        this.emit(EventType.StepStarted, { kind: definition.kind }, record.name);
        return;
      case StepKind.Sleep:
        record.status = StepStatus.Waiting;
        record.startedAt = this.now;
        this.emit(EventType.StepStarted, { kind: definition.kind }, record.name);
        this.schedule(
          { kind: 'sleep', step: record.name, attempt: record.attempt + 1 },
          this.now + definition.durationMs,
        );
        return;
      case StepKind.Wait: {
        record.status = StepStatus.Waiting;
        record.startedAt = this.now;
        this.emit(EventType.StepStarted, { kind: definition.kind, signal: definition.signal }, record.name);
        const [early, ...rest] = this.run.signals[definition.signal] ?? [];
        if (this.run.signals[definition.signal]?.length) {
          this.run.signals = { ...this.run.signals, [definition.signal]: rest };
          this.completeStep(record, definition.output, early, undefined, {
            kind: StepKind.Wait,
            signal: definition.signal,
          });
          return;
        }
        if (definition.timeoutMs !== undefined) {
          this.schedule(
            { kind: 'wait', step: record.name, attempt: record.attempt + 1 },
            this.now + definition.timeoutMs,
          );
        }
        return;
      }
    }
  }

  private startAttempt(compiled: CompiledStep, record: StepRecord, attempt: number): void {
    const definition = compiled.definition as TaskStep;
    if (definition.agent === true) {
      const over = this.overBudget(record.name);
      if (over !== undefined) {
        // Not dispatched: the model is never called past the run's budget.
        this.failStep(record, over);
        return;
      }
    }
    record.status = StepStatus.Running;
    record.attempt = attempt;
    record.attempts = [...record.attempts, { attempt, startedAt: this.now }];
    if (record.heartbeatAt !== undefined) delete record.heartbeatAt;
    record.startedAt ??= this.now;
    let input: unknown;
    try {
      input = this.input(compiled);
    } catch (err) {
      const program = compiled.input as CelProgram;
      this.failAttempt(definition, record, expressionError('input', program, err), 'failed');
      return;
    }
    const timeoutMs = definition.timeoutMs ?? this.workflow.definition.defaults?.timeoutMs;
    const heartbeatTimeoutMs = this.heartbeatTimeoutMs(definition);
    const scheduleToStartTimeoutMs = this.scheduleToStartTimeoutMs(definition);
    this.command(
      definition.worker,
      record.name,
      attempt,
      false,
      input,
      timeoutMs,
      heartbeatTimeoutMs,
      scheduleToStartTimeoutMs,
    );
    if (timeoutMs !== undefined) {
      this.schedule({ kind: 'timeout', step: record.name, attempt }, this.now + timeoutMs);
    }
    if (scheduleToStartTimeoutMs !== undefined) {
      this.schedule({ kind: 'start', step: record.name, attempt }, this.now + scheduleToStartTimeoutMs);
    }
    if (heartbeatTimeoutMs !== undefined) {
      this.schedule({ kind: 'heartbeat', step: record.name, attempt }, this.now + heartbeatTimeoutMs);
    }
    this.emit(EventType.StepStarted, { worker: definition.worker }, record.name, attempt);
  }

  /**
   * BUDGET_EXCEEDED when dispatching one more agent attempt could take the run past its budget:
   * what it spent so far plus what the agent attempts in flight (this one included) may spend,
   * counted as one token each (their real usage is not known until they answer).
   */
  private overBudget(step: string): ErrorInfo | undefined {
    const budget = this.workflow.definition.budget;
    if (budget === undefined) return undefined;
    let inFlight = 1;
    for (const name in this.run.steps) {
      if (name === step) continue;
      const other = this.run.steps[name] as StepRecord;
      const definition = this.workflow.steps.get(name)?.definition;
      if (other.status === StepStatus.Running && definition?.kind === StepKind.Task && definition.agent)
        inFlight++;
    }
    const usage = this.run.usage;
    const check = checkBudget(
      budget,
      { tokens: usage?.totalTokens ?? 0, costUsd: usage?.costUsd ?? 0 },
      { tokens: inFlight, costUsd: 0 },
    );
    if (!check.exceeded) return undefined;
    return {
      code: ErrorCode.BudgetExceeded,
      message: `the run's budget would be exceeded: ${check.reasons.join('; ')}`,
      retryable: false,
      details: { budget, spent: usage ?? null, reservedAttempts: inFlight },
    };
  }

  /**
   * Adds what an agent attempt reports having spent (in its output, or its error's details) to the
   * run's usage, and returns it for the attempt's lifecycle event (metrics count tokens from there).
   */
  private countUsage(definition: TaskStep, reported: unknown): AttemptUsage | undefined {
    if (definition.agent !== true || typeof reported !== 'object' || reported === null) return undefined;
    const u = (reported as { usage?: unknown }).usage;
    if (typeof u !== 'object' || u === null) return undefined;
    const n = (value: unknown): number =>
      typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
    const { promptTokens, completionTokens, totalTokens, costUsd } = u as Record<string, unknown>;
    const prompt = n(promptTokens);
    const completion = n(completionTokens);
    const before = this.run.usage;
    this.run.usage = {
      promptTokens: (before?.promptTokens ?? 0) + prompt,
      completionTokens: (before?.completionTokens ?? 0) + completion,
      totalTokens: (before?.totalTokens ?? 0) + (n(totalTokens) || prompt + completion),
      costUsd: (before?.costUsd ?? 0) + n(costUsd),
      attempts: (before?.attempts ?? 0) + 1,
    };
    return { promptTokens: prompt, completionTokens: completion, costUsd: n(costUsd) };
  }

  private completeTask(definition: TaskStep, record: StepRecord, output: unknown): void {
    const usage = this.countUsage(definition, output);
    record.attempts = closeLast(record.attempts, this.now, 'completed');
    this.clearAttemptTimers(definition, record);
    this.completeStep(record, definition.output, output, usage);
  }

  private failAttempt(
    definition: TaskStep,
    record: StepRecord,
    error: ErrorInfo,
    outcome: 'failed' | 'timed_out',
  ): void {
    // A failed agent attempt was paid for too.
    const usage = this.countUsage(definition, error.details);
    record.attempts = closeLast(record.attempts, this.now, outcome, error);
    this.clearAttemptTimers(definition, record);
    const policy = this.retryPolicy(definition);
    record.error = error;
    if (error.partialEffects && record.partialEffects !== true) {
      // Whichever attempt of the series left effects, they stay until undone: the step is
      // compensated however it ends (its last attempt failing, timing out, a cancel or a sibling's
      // failure stopping its retry), not only when its final failure says so (SPEC §3). Its place
      // in the unwinding is when its first effects were left, as a completion's is when it
      // completed: effects are undone newest first, so a branch that completed after them is
      // undone before them. A completion of the step later takes its own place (completeStep).
      record.partialEffects = true;
      record.completedSeq = ++this.run.completedCount;
    }
    // The budget counts the attempts of the current series (an operator retry starts a new one).
    const tries = record.attempt - (record.attemptBase ?? 0);
    if (this.canRetry(policy, error, tries)) {
      const delayMs = backoffDelayMs(policy, tries);
      record.status = StepStatus.Retrying;
      this.emit(
        EventType.StepRetrying,
        { error, delayMs, ...(usage === undefined ? {} : { usage }) },
        record.name,
        record.attempt,
      );
      if (delayMs === 0) this.startAttempt(this.compiled(record.name), record, record.attempt + 1);
      else
        this.schedule({ kind: 'retry', step: record.name, attempt: record.attempt + 1 }, this.now + delayMs);
      return;
    }
    this.failStep(record, error, usage);
  }

  private canRetry(policy: ResolvedRetryPolicy, error: ErrorInfo, tries: number): boolean {
    return (
      error.retryable &&
      !policy.nonRetryableErrors.includes(error.code) &&
      tries < policy.maxAttempts &&
      !this.isStopping()
    );
  }

  /**
   * `waited` is what a wait or sleep step's end tells (its kind, the signal it waited for), so a
   * reader of the event alone (a tracer started after the step began) knows what ended.
   */
  private failStep(
    record: StepRecord,
    error: ErrorInfo,
    usage?: AttemptUsage,
    waited?: Readonly<Record<string, string>>,
  ): void {
    this.endStep(record, StepStatus.Failed);
    record.error = error;
    const durationMs = record.startedAt === undefined ? 0 : this.now - record.startedAt;
    this.emit(
      EventType.StepFailed,
      { error, durationMs, ...waited, ...(usage === undefined ? {} : { usage }) },
      record.name,
      record.attempt || undefined,
    );
    if (!this.isStopping()) {
      this.run.error = { ...error, details: { ...error.details, step: record.name } };
    }
  }

  private completeStep(
    record: StepRecord,
    outputKey: string | undefined,
    output: unknown,
    usage?: AttemptUsage,
    waited?: Readonly<Record<string, string>>,
  ): void {
    this.endStep(record, StepStatus.Completed);
    record.completedSeq = ++this.run.completedCount;
    // What an earlier attempt left is now part of a completed step: undone as any completed step.
    if (record.partialEffects !== undefined) delete record.partialEffects;
    if (record.error !== undefined) delete record.error;
    this.recordOutput(record, outputKey, output);
    const durationMs = record.startedAt === undefined ? 0 : this.now - record.startedAt;
    this.emit(
      EventType.StepCompleted,
      { durationMs, ...waited, ...(usage === undefined ? {} : { usage }) },
      record.name,
      record.attempt || undefined,
    );
  }

  /**
   * Keeps a step's output and puts it into the context: under its key, or merged when an object.
   * `outputSeq` and `outputKey` record how, so `rebuildContext` gives the same context from the
   * step records alone.
   */
  private recordOutput(record: StepRecord, outputKey: string | undefined, output: unknown): void {
    if (output === undefined) return;
    record.output = output;
    record.outputSeq = ++this.run.outputCount;
    if (outputKey !== undefined) {
      record.outputKey = outputKey;
      this.run.context = mergedCopy(this.run.context, { [outputKey]: output });
    } else if (isPlainObject(output)) {
      this.run.context = mergedCopy(this.run.context, output);
    }
  }

  private endStep(record: StepRecord, status: StepStatus): void {
    record.status = status;
    record.endedAt = this.now;
  }

  private clearAttemptTimers(definition: TaskStep, record: StepRecord): void {
    const attempt = record.attempt;
    if ((definition.timeoutMs ?? this.workflow.definition.defaults?.timeoutMs) !== undefined) {
      this.unschedule({ kind: 'timeout', step: record.name, attempt });
    }
    if (this.heartbeatTimeoutMs(definition) !== undefined) {
      this.unschedule({ kind: 'heartbeat', step: record.name, attempt });
    }
    const last = record.attempts[record.attempts.length - 1];
    if (this.scheduleToStartTimeoutMs(definition) !== undefined && last?.pickedUpAt === undefined) {
      this.unschedule({ kind: 'start', step: record.name, attempt });
    }
  }

  // ---- compensation -------------------------------------------------------------------------

  private startCompensationAttempt(definition: TaskStep, record: StepRecord, attempt: number): void {
    const previous = record.compensation;
    record.compensation = {
      status: 'running',
      attempt,
      attempts: [...(previous?.attempts ?? []), { attempt, startedAt: this.now }],
      startedAt: previous?.startedAt ?? this.now,
      ...(previous?.attemptBase === undefined ? {} : { attemptBase: previous.attemptBase }),
    };
    record.status = StepStatus.Compensating;
    const timeoutMs = this.compensationTimeoutMs(definition);
    this.command(
      definition.compensation as string,
      record.name,
      attempt,
      true,
      this.run.context,
      timeoutMs,
      undefined,
    );
    if (timeoutMs !== undefined) {
      this.schedule(
        { kind: 'timeout', step: record.name, attempt, compensation: true },
        this.now + timeoutMs,
      );
    }
    this.emit(
      EventType.StepStarted,
      { worker: definition.compensation, compensation: true },
      record.name,
      attempt,
    );
  }

  private completeCompensation(record: StepRecord): void {
    const compensation = record.compensation;
    if (!compensation) return;
    const definition = this.compiled(record.name).definition as TaskStep;
    if (this.compensationTimeoutMs(definition) !== undefined) {
      this.unschedule({
        kind: 'timeout',
        step: record.name,
        attempt: compensation.attempt,
        compensation: true,
      });
    }
    record.compensation = {
      ...compensation,
      status: 'completed',
      attempts: closeLast(compensation.attempts, this.now, 'completed'),
      endedAt: this.now,
    };
    record.status = StepStatus.Compensated;
    this.emit(
      EventType.CompensationCompleted,
      { durationMs: this.now - compensation.startedAt },
      record.name,
      compensation.attempt,
    );
  }

  private failCompensationAttempt(
    definition: TaskStep,
    record: StepRecord,
    error: ErrorInfo,
    outcome: 'failed' | 'timed_out',
  ): void {
    const compensation = record.compensation;
    if (!compensation) return;
    if (this.compensationTimeoutMs(definition) !== undefined) {
      this.unschedule({
        kind: 'timeout',
        step: record.name,
        attempt: compensation.attempt,
        compensation: true,
      });
    }
    const attempts = closeLast(compensation.attempts, this.now, outcome, error);
    const policy = resolveRetryPolicy(
      DEFAULT_COMPENSATION_RETRY_POLICY,
      this.workflow.definition.defaults?.compensationRetry,
      definition.compensationRetry,
    );
    const tries = compensation.attempt - (compensation.attemptBase ?? 0);
    const retryable =
      error.retryable && !policy.nonRetryableErrors.includes(error.code) && tries < policy.maxAttempts;
    if (retryable) {
      const delayMs = backoffDelayMs(policy, tries);
      record.compensation = { ...compensation, status: 'retrying', attempts, error };
      this.emit(
        EventType.StepRetrying,
        { error, delayMs, compensation: true },
        record.name,
        compensation.attempt,
      );
      if (delayMs === 0) this.startCompensationAttempt(definition, record, compensation.attempt + 1);
      else {
        this.schedule(
          { kind: 'retry', step: record.name, attempt: compensation.attempt + 1, compensation: true },
          this.now + delayMs,
        );
      }
      return;
    }
    record.compensation = { ...compensation, status: 'failed', attempts, error, endedAt: this.now };
    record.status = StepStatus.CompensationFailed;
    this.emit(
      EventType.CompensationFailed,
      { error, durationMs: this.now - compensation.startedAt },
      record.name,
      compensation.attempt,
    );
  }

  // ---- helpers ------------------------------------------------------------------------------

  /** The step's record, this draft's own copy (to change). Throws when the run has no such step. */
  private record(name: string): StepRecord {
    const record = this.writable(name);
    if (!record) throw new Error(`run ${this.run.txId} has no record of step ${name}`);
    return record;
  }

  /** The step's record as {@link record} gives it, or undefined when the run has no such step. */
  private writable(name: string): StepRecord | undefined {
    const record = this.run.steps[name];
    if (!record || record !== this.original.steps[name]) return record;
    const copy = shallowCopy(record);
    this.run.steps[name] = copy;
    return copy;
  }

  private compiled(name: string): CompiledStep {
    const compiled = this.workflow.steps.get(name);
    if (!compiled) throw new Error(`workflow ${this.workflow.definition.id} has no step ${name}`);
    return compiled;
  }

  private retryPolicy(definition: TaskStep): ResolvedRetryPolicy {
    return resolveRetryPolicy(
      DEFAULT_RETRY_POLICY,
      this.workflow.definition.defaults?.retry,
      definition.retry,
    );
  }

  private heartbeatTimeoutMs(definition: TaskStep): number | undefined {
    return definition.heartbeatTimeoutMs ?? this.workflow.definition.defaults?.heartbeatTimeoutMs;
  }

  private scheduleToStartTimeoutMs(definition: TaskStep): number | undefined {
    return definition.scheduleToStartTimeoutMs ?? this.workflow.definition.defaults?.scheduleToStartTimeoutMs;
  }

  private compensationTimeoutMs(definition: TaskStep): number | undefined {
    return definition.compensationTimeoutMs ?? this.workflow.definition.defaults?.compensationTimeoutMs;
  }

  private activation(compiled: CompiledStep): CelActivation {
    const steps: Record<string, { status: string; output?: unknown }> = {};
    if (compiled.readsSteps) {
      for (const name in this.run.steps) {
        const record = this.run.steps[name] as StepRecord;
        steps[name] = {
          status: record.status,
          ...(record.output === undefined ? {} : { output: record.output }),
        };
      }
    }
    return { context: this.run.context, input: this.run.input, steps };
  }

  private input(compiled: CompiledStep): unknown {
    const mapping = compiled.input;
    if (mapping === undefined) return this.run.context;
    const activation = this.activation(compiled);
    if (typeof mapping.evaluate === 'function')
      return celToJson((mapping as CelProgram).evaluate(activation));
    const out: Record<string, unknown> = {};
    for (const [field, program] of Object.entries(mapping as Record<string, CelProgram>)) {
      out[field] = celToJson(program.evaluate(activation));
    }
    return out;
  }

  /** Moves the run to `to`; `operator` allows only the ways out of a terminal state (and only those). */
  private transition(to: RunState, operator = false): void {
    if (operator) {
      assertOperatorTransition(this.run.state, to, this.run.txId);
      if (this.run.endedAt !== undefined) delete this.run.endedAt;
    } else {
      assertTransition(this.run.state, to, this.run.txId);
    }
    this.run.state = to;
    if (isTerminalRunState(to)) this.run.endedAt = this.now;
  }

  private envelope<P>(
    id: string,
    type: Envelope['type'],
    payload: P,
    step?: string,
    attempt?: number,
  ): Envelope<P> {
    const envelope: { -readonly [K in keyof Envelope<P>]: Envelope<P>[K] } = {
      id,
      type,
      txId: this.run.txId,
      workflowId: this.run.workflowId,
      time: this.now,
      headers: this.run.traceHeaders ?? NO_HEADERS,
      payload,
    };
    if (step !== undefined) envelope.step = step;
    if (attempt !== undefined) envelope.attempt = attempt;
    return envelope;
  }

  /** Time from the run's creation to now: the `durationMs` of the event that ends it. */
  private runDurationMs(): number {
    return this.now - this.run.createdAt;
  }

  private emit(
    type: Envelope['type'],
    details: Record<string, unknown>,
    step?: string,
    attempt?: number,
  ): void {
    const event: Record<string, unknown> = { type, state: this.run.state };
    if (step !== undefined) event['step'] = step;
    if (attempt !== undefined) event['attempt'] = attempt;
    for (const key in details) event[key] = details[key];
    this.lifecycle.push(event as LifecycleEvent);
  }

  private command(
    worker: string,
    step: string,
    attempt: number,
    compensation: boolean,
    input: unknown,
    timeoutMs: number | undefined,
    heartbeatTimeoutMs: number | undefined,
    scheduleToStartTimeoutMs?: number,
  ): void {
    const commandId = commandIdFor(this.run.txId, step, attempt, compensation);
    const payload: { -readonly [K in keyof StepCommandPayload]: StepCommandPayload[K] } = {
      commandId,
      worker,
      input,
      idempotencyKey: idempotencyKeyFor(this.run.txId, step, compensation),
      compensation,
    };
    if (timeoutMs !== undefined) payload.timeoutMs = timeoutMs;
    if (heartbeatTimeoutMs !== undefined) payload.heartbeatTimeoutMs = heartbeatTimeoutMs;
    if (scheduleToStartTimeoutMs !== undefined) payload.scheduleToStartTimeoutMs = scheduleToStartTimeoutMs;
    this.commands.push(this.envelope(commandId, EventType.StepCommand, payload, step, attempt));
  }

  private schedule(payload: TimerPayload, dueAt: number): void {
    const id = timerIdFor(this.run.txId, payload);
    this.timers.set(id, { id, txId: this.run.txId, dueAt, payload });
  }

  private unschedule(payload: TimerPayload): void {
    this.timers.set(timerIdFor(this.run.txId, payload), null);
  }
}

function timeoutError(code: string, what: string): ErrorInfo {
  return { code, message: `${what} timed out`, retryable: true };
}

function expressionError(field: string, program: CelProgram | undefined, err: unknown): ErrorInfo {
  const message = err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err);
  return {
    code: 'EXPRESSION_ERROR',
    // A per-field input mapping is no program of its own: it has no one source to show.
    message: `${field}${typeof program?.source === 'string' ? ` ${JSON.stringify(program.source)}` : ''} failed: ${message}`,
    retryable: false,
  };
}
