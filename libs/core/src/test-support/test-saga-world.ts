import {
  isTerminalRunState,
  rebuildContext,
  StepKind,
  StepStatus,
  Topics,
  type Envelope,
  type ErrorInfo,
  type Run,
  type RunState,
  type StepCommandPayload,
  type StepDefinition,
  type TaskStep,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import type { Timer, TimerPayload } from '../ports/timer';
import { decodeRunRecord, encodeRunRecord } from '../store/run-record';
import { compileWorkflow, taskSteps, type CompiledWorkflow } from '../definition/validate-definition';
import { canOperatorTransition, canTransition } from '../engine/run-transitions';
import {
  commandIdFor,
  createRun,
  decide,
  isOperatorEvent,
  type AttemptOutcome,
  type Decision,
  type EngineEvent,
} from '../engine/saga-engine';
import { deepFreeze } from './test-deep-freeze';

/** What a step's worker does on each attempt. */
export type TaskPlan =
  | { readonly kind: 'ok' }
  /** Retryable failure on attempts 1..failures, then success. */
  | { readonly kind: 'flaky'; readonly failures: number }
  /** Non-retryable failure; with `partial` it applies its effect first and says so. */
  | { readonly kind: 'fatal'; readonly partial: boolean }
  /**
   * Attempt 1 applies its effect, then fails retryably and says so (it charged the card, then the
   * network dropped); later attempts, which find the effect applied, then: complete it (`ok`),
   * fail non-retryably without declaring anything (`fatal`), or never answer (`hang`: only the
   * timeout ends them).
   */
  | { readonly kind: 'partial'; readonly then: 'ok' | 'fatal' | 'hang' }
  /** Fails with a retryable-looking code that the step lists in `nonRetryableErrors`. */
  | { readonly kind: 'listed' }
  /** No result at all on attempts 1..times (only the timeout timer resolves it), then success. */
  | { readonly kind: 'hang'; readonly times: number };

/** What a step's compensation worker does on each attempt. */
export type UndoPlan =
  | { readonly kind: 'ok' }
  | { readonly kind: 'flaky'; readonly failures: number }
  | { readonly kind: 'broken' };

/** The error code a step with a `listed` plan fails with (and lists in `nonRetryableErrors`). */
export const LISTED_CODE = 'LISTED';

/** One world: a workflow and what its workers will do. */
export interface Scenario {
  readonly definition: WorkflowDefinition;
  readonly plans: Readonly<Record<string, TaskPlan>>;
  readonly undoPlans: Readonly<Record<string, UndoPlan>>;
}

/** One choice of the interleaving. Indices are taken modulo the size of what they pick from. */
export type WorldAction =
  | { readonly t: 'command'; readonly i: number }
  | { readonly t: 'result'; readonly i: number }
  | { readonly t: 'duplicate'; readonly i: number }
  | { readonly t: 'redeliver'; readonly i: number }
  | { readonly t: 'timer'; readonly i: number }
  | { readonly t: 'stale'; readonly i: number }
  | { readonly t: 'signal'; readonly name: string }
  | { readonly t: 'cancel' }
  | { readonly t: 'operator'; readonly action: OperatorAction };

/**
 * An operator's move (SPEC §3): retry or skip the failed step (`i` picks among the failed steps)
 * or the failed compensation, resume the compensation (or skip it), or something that must be
 * refused (`bogus`: a step that did not fail). With `fix`, the operator also repairs the worker
 * first: its step (or compensation) succeeds from then on, unless an effect already applied for
 * the idempotency key says otherwise.
 */
export interface OperatorAction {
  readonly op: 'retry' | 'skip' | 'resume' | 'resumeSkip' | 'bogus';
  readonly i: number;
  readonly fix: boolean;
}

interface CommandMessage {
  readonly topic: string;
  readonly envelope: Envelope<StepCommandPayload>;
}

interface ResultMessage {
  readonly step: string;
  readonly attempt: number;
  readonly compensation: boolean;
  readonly commandId: string;
  readonly outcome: AttemptOutcome;
}

/** One real application of an effect by a worker (the ledger makes it once per idempotency key). */
export interface Application {
  readonly key: string;
  readonly step: string;
  readonly undo: boolean;
  readonly seq: number;
}

/**
 * Reads (and clears) the run transitions the engine asked for since the last call; the third
 * element is true for an operator transition (the only way out of a terminal state).
 */
export type TransitionProbe = () => [RunState, RunState, boolean?][];

/** A failed invariant, with the world's story so far in the message. */
export class InvariantError extends Error {}

const MAX_DRAIN_STEPS = 5_000;
const WAIT_SIGNAL = 'go';

/**
 * A deterministic simulation of the orchestrator, bus, timer store and idempotent workers around
 * the pure engine. Commands and results sit in pools until an action delivers them (in any order,
 * more than once); timers fire when chosen (also after being unscheduled: stale); every decision
 * is checked as it is made, and {@link SagaWorld.checkFinal} checks SPEC §9 invariants 1-2.
 */
export class SagaWorld {
  readonly workflow: CompiledWorkflow;
  readonly txId = 'tx-sim';
  run: Run;
  now = 0;
  readonly log: string[] = [];

  private readonly commands: CommandMessage[] = [];
  private readonly deliveredCommands: CommandMessage[] = [];
  private readonly results: ResultMessage[] = [];
  private readonly deliveredResults: ResultMessage[] = [];
  private readonly timers = new Map<string, Timer>();
  private readonly staleTimers: TimerPayload[] = [];
  /** The worker side's store: one stored outcome per idempotency key. */
  private readonly ledger = new Map<string, AttemptOutcome>();
  /** Keys whose effect an attempt applied without storing an outcome (a `partial` plan's attempt 1). */
  private readonly appliedWithoutOutcome = new Set<string>();
  private readonly commandIds = new Set<string>();
  readonly applications: Application[] = [];
  private seq = 0;
  /**
   * Task steps in the order the engine accepted their completion, or the first failure of their
   * attempt series that declared partial effects (see {@link send}).
   */
  completionOrder: string[] = [];
  /** Steps and compensations an operator skipped, and the steps and undos an operator repaired. */
  private readonly skippedSteps = new Set<string>();
  private readonly skippedUndos = new Set<string>();
  private readonly fixedSteps = new Set<string>();
  private readonly fixedUndos = new Set<string>();
  /** Operator actions that moved the run out of a terminal state. */
  reopens = 0;
  private readonly history: { event: EngineEvent; now: number }[] = [];
  private readonly allEffects: unknown[] = [];
  readonly stateSequence: RunState[];
  cancelAccepted = false;
  /** What this world exercised, so a property can show its interesting cases really happened. */
  readonly stats = {
    decisions: 0,
    lateResultsIgnored: 0,
    duplicatesIgnored: 0,
    staleTimersIgnored: 0,
    redeliveries: 0,
    earlySignals: 0,
    partialEffectUndos: 0,
    /** Undos of partial effects that an attempt before the step's last one declared. */
    earlierPartialEffectUndos: 0,
  };
  /** Operator actions taken and refused, by kind (only worlds that act as an operator fill it). */
  readonly operatorStats = {
    stepRetried: 0,
    stepSkipped: 0,
    compensationRetried: 0,
    compensationSkipped: 0,
    refused: 0,
    completedAfterReopen: 0,
    compensatedAfterResume: 0,
  };
  private readonly tasks: Map<string, TaskStep>;
  /** Signals a live run took, by name. */
  private readonly signalsTaken = new Map<string, number>();

  constructor(
    readonly scenario: Scenario,
    private readonly probe: TransitionProbe,
    /**
     * Whether the interleaving may fire an attempt's timeout while the attempt could still answer
     * (a worker slower than its timeout). Off, timeouts fire only while draining, once the
     * attempt has hung for good.
     */
    private readonly earlyTimeouts = true,
  ) {
    this.workflow = compileWorkflow(scenario.definition);
    this.tasks = new Map(taskSteps(scenario.definition.steps).map((t) => [t.name, t]));
    this.run = createRun({
      txId: this.txId,
      workflow: scenario.definition,
      input: { orderId: 'o-1' },
      now: 0,
    });
    this.stateSequence = [this.run.state];
    probe();
  }

  // ---- invariant helpers ----------------------------------------------------------------------

  check(condition: boolean, what: string): asserts condition {
    if (!condition) {
      throw new InvariantError(
        `${what}\nscenario: ${JSON.stringify(this.scenario)}\nrun: ${JSON.stringify(this.run)}\nlog:\n  ${this.log.join('\n  ')}`,
      );
    }
  }

  // ---- the engine -----------------------------------------------------------------------------

  /** Hands one event to `decide` on a deep-frozen run, checks the decision, carries out its effects. */
  send(event: EngineEvent): Decision {
    const before = deepFreeze(this.run);
    this.probe();
    const decision = decide(this.workflow, before, event, this.now);
    const transitions = this.probe();
    this.stats.decisions++;
    this.history.push({ event, now: this.now });
    this.log.push(
      `${this.now} ${describe(event)} -> ${decision.ignored ? `ignored (${decision.ignored})` : decision.run.state}`,
    );

    const operator = isOperatorEvent(event);
    if (isTerminalRunState(before.state) && !operator)
      this.check(decision.ignored !== undefined, 'a terminal run changed');
    if (decision.ignored !== undefined) {
      this.check(decision.run === before, 'an ignored event returned a different run object');
      this.check(
        decision.commands.length +
          decision.lifecycle.length +
          decision.schedule.length +
          decision.cancel.length ===
          0,
        'an ignored event produced effects',
      );
      this.check(transitions.length === 0, 'an ignored event made a transition');
      return decision;
    }
    // Every state change went through the transition table, as one unbroken chain.
    let state = before.state;
    for (const [index, [from, to, byOperator]] of transitions.entries()) {
      this.check(
        from === state,
        `transition ${from} -> ${to} does not start from the current state ${state}`,
      );
      if (byOperator) {
        // Out of a terminal state: only an operator event, as its first transition.
        this.check(operator && index === 0, `operator transition ${from} -> ${to} on ${describe(event)}`);
        this.check(canOperatorTransition(from, to), `illegal operator transition ${from} -> ${to}`);
        this.reopens++;
      } else {
        this.check(canTransition(from, to), `illegal transition ${from} -> ${to}`);
      }
      state = to;
      this.stateSequence.push(to);
    }
    if (operator) {
      this.check(
        isTerminalRunState(before.state) && transitions[0]?.[2] === true,
        `operator event ${describe(event)} accepted on a ${before.state} run without an operator transition`,
      );
      // A step run again forgets its old completion (partial effects of a failed run's step).
      this.completionOrder = this.completionOrder.filter(
        (name) => decision.run.steps[name]?.completedSeq !== undefined,
      );
    }
    this.check(
      state === decision.run.state,
      `state changed to ${decision.run.state} outside the transition table`,
    );

    this.run = decision.run;
    this.allEffects.push(effectsOf(decision));
    if (event.type === 'result' && !event.commandId.includes(':undo:')) {
      // Judged from the outcome, not from the engine's bookkeeping. Effects are owed an undo from
      // the first accepted failure of the series that declares partial effects, final or not,
      // and keep that place in the order however the step ends later (SPEC §3: the worker
      // declared them); an accepted success completes the step and takes its place then.
      const step = event.step;
      if (event.outcome.ok) {
        this.completionOrder = [...this.completionOrder.filter((name) => name !== step), step];
      } else if (event.outcome.error.partialEffects === true && !this.completionOrder.includes(step)) {
        this.completionOrder.push(step);
      }
    }
    for (const id of decision.cancel) {
      const timer = this.timers.get(id);
      if (timer) {
        this.timers.delete(id);
        this.staleTimers.push(timer.payload);
      }
    }
    for (const timer of decision.schedule) {
      this.check(!decision.cancel.includes(timer.id), `timer ${timer.id} both scheduled and cancelled`);
      this.timers.set(timer.id, timer);
    }
    for (const envelope of decision.commands) {
      const topic = Topics.command(envelope.payload.worker);
      this.checkCommand(topic, envelope);
      this.commands.push({ topic, envelope });
    }
    this.checkSlimState(before, decision);
    if (isTerminalRunState(decision.run.state)) {
      // A finished run leaves nothing behind that could fire later.
      this.check(
        this.timers.size === 0,
        `run ended ${decision.run.state} with timers: ${[...this.timers.keys()].join(', ')}`,
      );
    }
    return decision;
  }

  /**
   * What a store writes is enough: the changed steps are exactly the records that differ, and the
   * context is what the input and the step records imply (the store does not keep it).
   */
  private checkSlimState(before: Run, decision: Decision): void {
    const after = decision.run;
    const differ = Object.keys(after.steps).filter(
      (name) => JSON.stringify(before.steps[name]) !== JSON.stringify(after.steps[name]),
    );
    this.check(
      JSON.stringify([...decision.changedSteps].sort()) === JSON.stringify(differ.sort()),
      `changedSteps ${list(decision.changedSteps)}, but the records that changed are ${list(differ)}`,
    );
    this.check(
      JSON.stringify(rebuildContext(after.input, after.steps)) === JSON.stringify(after.context),
      'the context is not what the input and the step records imply',
    );
    const stored = decodeRunRecord(encodeRunRecord(after));
    this.check(canonical(stored) === canonical(after), 'a stored run does not read back the same');
  }

  private checkCommand(topic: string, envelope: Envelope<StepCommandPayload>): void {
    const { step, attempt, payload } = envelope;
    this.check(step !== undefined && attempt !== undefined, 'command without step or attempt');
    const definition = this.tasks.get(step);
    this.check(definition !== undefined, `command for ${step}, which is not a task step`);
    const undo = payload.compensation;
    const worker = undo ? definition.compensation : definition.worker;
    this.check(
      worker !== undefined && payload.worker === worker,
      `command for ${step} to worker ${payload.worker}`,
    );
    this.check(topic === Topics.command(worker), `command for ${worker} on topic ${topic}`);
    this.check(
      payload.commandId === commandIdFor(this.txId, step, attempt, undo),
      `command id ${payload.commandId}`,
    );
    this.check(envelope.id === payload.commandId, 'envelope id differs from the command id');
    // A new attempt (an operator's retry too) never reuses a command id: an old attempt's result
    // must not pass for the new one's.
    this.check(!this.commandIds.has(payload.commandId), `command id ${payload.commandId} used twice`);
    this.commandIds.add(payload.commandId);
    this.check(
      payload.idempotencyKey === (undo ? `${this.txId}:${step}:undo` : `${this.txId}:${step}`),
      `idempotency key ${payload.idempotencyKey}`,
    );
    if (undo) {
      // A compensation is only ever asked of a step the engine saw complete (or partially fail).
      this.check(this.completionOrder.includes(step), `compensation of ${step}, which never completed`);
    }
  }

  // ---- the workers ----------------------------------------------------------------------------

  /** A worker receives a command: it applies its effect at most once per idempotency key. */
  private work(command: CommandMessage): void {
    const { payload, attempt, step } = command.envelope as Required<Envelope<StepCommandPayload>>;
    const undo = payload.compensation;
    const result = (outcome: AttemptOutcome): void => {
      this.results.push({ step, attempt, compensation: undo, commandId: payload.commandId, outcome });
    };
    const stored = this.ledger.get(payload.idempotencyKey);
    if (stored) {
      result(stored);
      return;
    }
    // An effect applied once per key: an attempt that finds it applied (by an attempt that failed
    // after applying it) finishes it without applying it again.
    const applyEffect = (): void => {
      if (this.appliedWithoutOutcome.has(payload.idempotencyKey)) return;
      this.applications.push({ key: payload.idempotencyKey, step, undo, seq: ++this.seq });
    };
    const apply = (outcome: AttemptOutcome): void => {
      applyEffect();
      this.ledger.set(payload.idempotencyKey, outcome);
      result(outcome);
    };
    const fail = (code: string, retryable: boolean, extra: Partial<ErrorInfo> = {}): AttemptOutcome => ({
      ok: false,
      error: { code, message: code, retryable, ...extra },
    });
    const success: AttemptOutcome = { ok: true, output: undo ? undefined : { [`${step}_done`]: true } };
    if (undo) {
      const plan: UndoPlan = this.fixedUndos.has(step)
        ? { kind: 'ok' }
        : (this.scenario.undoPlans[step] ?? { kind: 'ok' });
      if (plan.kind === 'broken') result(fail('UNDO_BROKEN', true));
      else if (plan.kind === 'flaky' && attempt <= plan.failures) result(fail('UNDO_FLAKY', true));
      else apply(success);
      return;
    }
    const plan: TaskPlan = this.fixedSteps.has(step)
      ? { kind: 'ok' }
      : (this.scenario.plans[step] ?? { kind: 'ok' });
    switch (plan.kind) {
      case 'ok':
        apply(success);
        return;
      case 'flaky':
        if (attempt <= plan.failures) result(fail('FLAKY', true));
        else apply(success);
        return;
      case 'fatal':
        if (plan.partial) apply(fail('FATAL', false, { partialEffects: true }));
        else result(fail('FATAL', false));
        return;
      case 'listed':
        result(fail(LISTED_CODE, true));
        return;
      case 'hang':
        if (attempt > plan.times) apply(success);
        return;
      case 'partial':
        if (attempt === 1) {
          // A retryable failure stores no outcome: the next attempt runs the worker again.
          applyEffect();
          this.appliedWithoutOutcome.add(payload.idempotencyKey);
          result(fail('PARTIAL', true, { partialEffects: true }));
        } else if (plan.then === 'ok') apply(success);
        else if (plan.then === 'fatal') result(fail('FATAL', false));
        return;
    }
  }

  // ---- actions --------------------------------------------------------------------------------

  start(): void {
    this.send({ type: 'start' });
  }

  act(action: WorldAction): void {
    switch (action.t) {
      case 'command':
        if (this.commands.length > 0) this.deliverCommand(action.i % this.commands.length);
        return;
      case 'redeliver': {
        // At-least-once delivery: the same command reaches a worker again.
        const command = this.deliveredCommands[action.i % Math.max(1, this.deliveredCommands.length)];
        if (command) {
          this.stats.redeliveries++;
          this.work(command);
        }
        return;
      }
      case 'result':
        if (this.results.length > 0) this.deliverResult(action.i % this.results.length);
        return;
      case 'duplicate': {
        const message = this.deliveredResults[action.i % Math.max(1, this.deliveredResults.length)];
        if (message) {
          this.now += 1;
          const decision = this.send(resultEvent(message));
          this.check(decision.ignored !== undefined, `duplicate result ${message.commandId} was not ignored`);
          this.stats.duplicatesIgnored++;
        }
        return;
      }
      case 'timer': {
        const active = [...this.timers.values()]
          .filter((t) => this.earlyTimeouts || t.payload.kind !== 'timeout')
          .sort((a, b) => (a.id < b.id ? -1 : 1));
        const timer = active[action.i % Math.max(1, active.length)];
        if (timer) this.fire(timer);
        return;
      }
      case 'stale': {
        const payload = this.staleTimers[action.i % Math.max(1, this.staleTimers.length)];
        if (payload) {
          const decision = this.send({ type: 'timer', timer: payload });
          this.check(
            decision.ignored !== undefined,
            `stale timer ${JSON.stringify(payload)} was not ignored`,
          );
          this.stats.staleTimersIgnored++;
        }
        return;
      }
      case 'signal':
        this.now += 1;
        if (action.name === WAIT_SIGNAL && !this.waitingForSignal() && !isTerminalRunState(this.run.state)) {
          this.stats.earlySignals++;
        }
        this.signal(action.name);
        return;
      case 'cancel': {
        const decision = this.send({ type: 'cancel' });
        if (decision.ignored === undefined) this.cancelAccepted = true;
        return;
      }
      case 'operator':
        this.operate(action.action);
        return;
    }
  }

  /**
   * An operator acts. Whether the engine must accept is judged here, independently: a retry or
   * skip of a failed (non-parallel) step of a failed run, or of the failed compensation of a
   * compensation_failed run; a resume of a compensation_failed run. Anything else is refused.
   */
  operate(action: OperatorAction): void {
    this.now += 1;
    const run = this.run;
    const failedSteps = Object.values(run.steps)
      .filter(
        (r) =>
          r.status === StepStatus.Failed &&
          this.workflow.steps.get(r.name)?.definition.kind !== StepKind.Parallel,
      )
      .map((r) => r.name);
    const head = run.compensationQueue?.[0];
    let event: EngineEvent;
    let valid: boolean;
    switch (action.op) {
      case 'retry':
      case 'skip': {
        const step =
          run.state === 'compensation_failed'
            ? head
            : (failedSteps[action.i % Math.max(1, failedSteps.length)] ?? Object.keys(run.steps)[0]);
        const name = step ?? 'nope';
        event =
          action.op === 'retry'
            ? { type: 'retry_step', step: name }
            : { type: 'skip_step', step: name, output: { [`${name}_skipped`]: true } };
        valid =
          (run.state === 'failed' && failedSteps.includes(name)) ||
          (run.state === 'compensation_failed' && name === head);
        break;
      }
      case 'resume':
      case 'resumeSkip':
        event = { type: 'resume_compensation', ...(action.op === 'resumeSkip' ? { skip: true } : {}) };
        valid = run.state === 'compensation_failed';
        break;
      case 'bogus': {
        // A step that did not fail (or is not the failed compensation), or one that does not exist.
        const names = Object.keys(run.steps).filter((name) => !failedSteps.includes(name) && name !== head);
        const name = names[action.i % Math.max(1, names.length)] ?? 'nope';
        event = action.i % 2 === 0 ? { type: 'retry_step', step: name } : { type: 'skip_step', step: name };
        valid = false;
        break;
      }
    }
    const compensating = run.state === 'compensation_failed';
    const target = 'step' in event ? event.step : head;
    const decision = this.send(event);
    if (!valid) {
      this.check(decision.ignored !== undefined, `${describe(event)} on a ${run.state} run was not refused`);
      this.operatorStats.refused++;
      return;
    }
    this.check(decision.ignored === undefined, `${describe(event)} was refused: ${decision.ignored}`);
    if (target === undefined) return;
    const skip = event.type === 'skip_step' || (event.type === 'resume_compensation' && event.skip === true);
    if (compensating) {
      if (skip) this.skippedUndos.add(target);
      else if (action.fix) this.fixedUndos.add(target);
      if (skip) this.operatorStats.compensationSkipped++;
      else this.operatorStats.compensationRetried++;
      return;
    }
    if (skip) {
      this.skippedSteps.add(target);
      this.operatorStats.stepSkipped++;
      this.check(this.run.context[`${target}_skipped`] === true, `output of skipped ${target} not recorded`);
    } else {
      // Every failed step starts again: a repair applies to the one named.
      if (action.fix) this.fixedSteps.add(target);
      this.operatorStats.stepRetried++;
    }
  }

  /** Signals are never lost: a live run takes every one (into a waiting step or its buffer). */
  private signal(name: string): void {
    const live = !isTerminalRunState(this.run.state);
    const decision = this.send({ type: 'signal', name, payload: { [`signal_${name}`]: true } });
    if (live) {
      this.check(decision.ignored === undefined, `signal ${name} to a ${this.run.state} run was dropped`);
      this.signalsTaken.set(name, (this.signalsTaken.get(name) ?? 0) + 1);
    }
  }

  private deliverCommand(index: number): void {
    const [command] = this.commands.splice(index, 1);
    if (!command) return;
    this.now += 1;
    this.deliveredCommands.push(command);
    this.work(command);
  }

  private deliverResult(index: number): void {
    const [message] = this.results.splice(index, 1);
    if (!message) return;
    this.now += 1;
    const record = this.run.steps[message.step];
    this.check(record !== undefined, `result for unknown step ${message.step}`);
    // The matching rule, independently: only the attempt now in flight may change the run.
    const current = message.compensation
      ? record.compensation?.status === 'running' && record.compensation.attempt === message.attempt
      : record.status === StepStatus.Running && record.attempt === message.attempt;
    const decision = this.send(resultEvent(message));
    this.deliveredResults.push(message);
    if (current) {
      this.check(
        decision.ignored === undefined,
        `current result ${message.commandId} was ignored: ${decision.ignored}`,
      );
    } else {
      this.check(decision.ignored !== undefined, `late result ${message.commandId} was not ignored`);
      if (!isTerminalRunState(this.run.state)) this.stats.lateResultsIgnored++;
    }
  }

  private fire(timer: Timer): void {
    this.timers.delete(timer.id);
    this.staleTimers.push(timer.payload);
    this.now = Math.max(this.now, timer.dueAt);
    this.send({ type: 'timer', timer: timer.payload });
  }

  /** Delivers everything and fires every timer in due order until nothing is left. */
  drain(): void {
    for (let i = 0; i < MAX_DRAIN_STEPS; i++) {
      if (this.commands.length > 0) this.deliverCommand(0);
      else if (this.results.length > 0) this.deliverResult(0);
      else if (this.timers.size > 0) {
        const next = [...this.timers.values()].sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1))[0];
        if (next) this.fire(next);
      } else if (!isTerminalRunState(this.run.state) && this.waitingForSignal()) {
        this.now += 1;
        this.signal(WAIT_SIGNAL);
      } else {
        this.check(isTerminalRunState(this.run.state), `drained, but the run is stuck in ${this.run.state}`);
        return;
      }
    }
    this.check(false, `drain did not terminate within ${MAX_DRAIN_STEPS} steps`);
  }

  private waitingForSignal(): boolean {
    for (const [name, compiled] of this.workflow.steps) {
      if (compiled.definition.kind === StepKind.Wait && this.run.steps[name]?.status === StepStatus.Waiting)
        return true;
    }
    return false;
  }

  // ---- final checks ---------------------------------------------------------------------------

  /** SPEC §9 invariants 1-2 once the world is quiet. */
  checkFinal(): void {
    const run = this.run;
    const final = run.state;
    this.check(isTerminalRunState(final), `run ended in non-terminal ${final}`);
    // One terminal state, or one more than the times an operator moved the run out of one.
    const terminalStates = this.stateSequence.filter((s) => isTerminalRunState(s));
    this.check(
      terminalStates.length === 1 + this.reopens,
      `terminal states reached: ${terminalStates.join(', ')} with ${this.reopens} operator reopens`,
    );

    // Every signal taken completed one wait step or is still kept (none lost, none used twice).
    for (const [name, taken] of this.signalsTaken) {
      const completedWaits = [...this.workflow.steps.values()].filter(
        (c) =>
          c.definition.kind === StepKind.Wait &&
          c.definition.signal === name &&
          run.steps[c.definition.name]?.status === StepStatus.Completed,
      ).length;
      const kept = run.signals[name]?.length ?? 0;
      this.check(
        taken === completedWaits + kept,
        `signal ${name}: took ${taken}, ${completedWaits} used, ${kept} kept`,
      );
    }

    // (2) at most once per idempotency key, each undo after its do.
    const keys = this.applications.map((a) => a.key);
    this.check(new Set(keys).size === keys.length, 'an effect was applied twice for one idempotency key');
    const doSeq = new Map(this.applications.filter((a) => !a.undo).map((a) => [a.step, a.seq]));
    const undone = this.applications.filter((a) => a.undo);
    for (const u of undone) {
      const done = doSeq.get(u.step);
      this.check(done !== undefined && done < u.seq, `undo of ${u.step} without an earlier do`);
    }

    // What must be undone: compensable steps the engine saw complete (or fail with partial
    // effects), newest completion first.
    const completedBySeq = [...this.tasks.keys()]
      .filter((name) => run.steps[name]?.completedSeq !== undefined)
      .sort((a, b) => (run.steps[b]?.completedSeq ?? 0) - (run.steps[a]?.completedSeq ?? 0));
    this.check(
      JSON.stringify([...completedBySeq].reverse()) === JSON.stringify(this.completionOrder),
      `engine completion order ${list(completedBySeq)} differs from the observed ${list(this.completionOrder)}`,
    );
    const owed = completedBySeq.filter((name) => this.tasks.get(name)?.compensation !== undefined);
    // A compensation an operator skipped is owed no more.
    const mustUndo = owed.filter((name) => !this.skippedUndos.has(name));
    for (const name of this.skippedUndos) {
      this.check(owed.includes(name), `skipped the compensation of ${name}, which was not owed`);
      this.check(run.steps[name]?.compensation?.status === 'skipped', `compensation of ${name} not skipped`);
    }
    const undoOrder = undone.map((u) => u.step);
    if (this.reopens > 0) {
      if (final === 'completed') this.operatorStats.completedAfterReopen++;
      if (final === 'compensated' || final === 'cancelled') this.operatorStats.compensatedAfterResume++;
    }

    switch (final) {
      case 'completed': {
        this.check(!this.cancelAccepted, 'completed after an accepted cancel');
        this.check(undone.length === 0, 'a completed run undid something');
        for (const [name] of this.tasks) {
          const status = run.steps[name]?.status;
          this.check(
            status === StepStatus.Completed ||
              status === StepStatus.Skipped ||
              (status === StepStatus.Pending && this.skippedAncestor(name)),
            `completed run with step ${name} ${status}`,
          );
          const applied = this.applications.filter((a) => !a.undo && a.step === name).length;
          // A step an operator skipped may have applied an effect (partially) before it failed.
          const expected = status === StepStatus.Completed ? 1 : 0;
          this.check(
            applied === expected || (this.skippedSteps.has(name) && applied <= 1),
            `step ${name} applied ${applied} times`,
          );
          if (this.skippedSteps.has(name)) {
            this.check(status === StepStatus.Skipped, `step ${name} was skipped but is ${status}`);
          }
          if (status === StepStatus.Completed)
            this.check(run.context[`${name}_done`] === true, `output of ${name} not merged`);
        }
        return;
      }
      case 'failed':
        this.check(!this.cancelAccepted, 'failed after an accepted cancel');
        this.check(mustUndo.length === 0, `failed with steps to undo: ${list(mustUndo)}`);
        this.check(undone.length === 0, 'failed run undid something');
        return;
      case 'compensated':
      case 'cancelled':
        this.check(
          this.cancelAccepted === (final === 'cancelled'),
          `${final} but cancelAccepted=${this.cancelAccepted}`,
        );
        this.check(
          JSON.stringify(undoOrder) === JSON.stringify(mustUndo),
          `undid ${list(undoOrder)}, expected ${list(mustUndo)} (newest completion first)`,
        );
        this.stats.partialEffectUndos += mustUndo.filter((name) => run.steps[name]?.partialEffects).length;
        this.stats.earlierPartialEffectUndos += mustUndo.filter((name) => {
          const record = run.steps[name];
          const last = record?.attempts[record.attempts.length - 1];
          return record?.partialEffects === true && last?.error?.partialEffects !== true;
        }).length;
        return;
      case 'compensation_failed': {
        const queue = run.compensationQueue ?? [];
        this.check(queue.length > 0, 'compensation_failed with an empty queue');
        // The queue is the owed tail; what came before it was undone, or skipped by an operator.
        const doneCount = owed.length - queue.length;
        this.check(
          JSON.stringify(undoOrder) ===
            JSON.stringify(owed.slice(0, doneCount).filter((name) => !this.skippedUndos.has(name))) &&
            JSON.stringify(queue) === JSON.stringify(owed.slice(doneCount)),
          `undid ${list(undoOrder)} with ${list(queue)} left, expected the split of ${list(owed)}`,
        );
        const head = run.steps[queue[0] as string];
        this.check(
          head?.compensation?.status === 'failed',
          'the head of the queue is not the failed compensation',
        );
        return;
      }
    }
  }

  private skippedAncestor(name: string): boolean {
    // A task inside a skipped parallel step stays pending.
    const walk = (steps: readonly StepDefinition[], skipped: boolean): boolean | undefined => {
      for (const step of steps) {
        if (step.name === name) return skipped;
        if (step.kind === StepKind.Parallel) {
          const here = skipped || this.run.steps[step.name]?.status === StepStatus.Skipped;
          for (const branch of step.branches) {
            const found = walk(branch, here);
            if (found !== undefined) return found;
          }
        }
      }
      return undefined;
    };
    return walk(this.scenario.definition.steps, false) === true;
  }

  /** (1) a terminal run stays terminal: more duplicates, timers, signals and a cancel change nothing. */
  checkStaysTerminal(): void {
    const final = this.run;
    const events: EngineEvent[] = [
      ...this.deliveredResults.map(resultEvent),
      ...this.staleTimers.map((timer) => ({ type: 'timer' as const, timer })),
      { type: 'signal', name: WAIT_SIGNAL, payload: {} },
      { type: 'cancel' },
      { type: 'start' },
      // Operator actions that do not apply: an unknown step, and those of the other terminal states.
      { type: 'retry_step', step: 'nope' },
      { type: 'skip_step', step: 'nope' },
    ];
    if (final.state !== 'compensation_failed') events.push({ type: 'resume_compensation' });
    if (final.state !== 'failed' && final.state !== 'compensation_failed') {
      for (const step of Object.keys(final.steps)) {
        events.push({ type: 'retry_step', step }, { type: 'skip_step', step });
      }
    }
    for (const event of events) {
      const decision = this.send(event);
      this.check(
        decision.ignored !== undefined && decision.run === final,
        `${describe(event)} changed a terminal run`,
      );
    }
  }

  /** Replays every event from scratch: the same decisions (decide is a pure function). */
  checkReplay(): void {
    let run = createRun({
      txId: this.txId,
      workflow: this.scenario.definition,
      input: { orderId: 'o-1' },
      now: 0,
    });
    const effects: unknown[] = [];
    for (const { event, now } of this.history) {
      const decision = decide(this.workflow, run, event, now);
      if (decision.ignored === undefined) effects.push(effectsOf(decision));
      run = decision.run;
    }
    this.check(JSON.stringify(run) === JSON.stringify(this.run), 'replay gave a different run');
    this.check(JSON.stringify(effects) === JSON.stringify(this.allEffects), 'replay gave different effects');
  }
}

/** JSON with object keys sorted, so equal values compare equal whatever their key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** A decision's output, for comparing a replay with the original. */
function effectsOf(decision: Decision): unknown {
  const { commands, lifecycle, schedule, cancel, changedSteps } = decision;
  return { commands, lifecycle, schedule, cancel, changedSteps };
}

function list(names: readonly string[]): string {
  return `[${names.join(', ')}]`;
}

function resultEvent(message: ResultMessage): EngineEvent {
  return { type: 'result', step: message.step, commandId: message.commandId, outcome: message.outcome };
}

function describe(event: EngineEvent): string {
  switch (event.type) {
    case 'result':
      return `result ${event.commandId} ${event.outcome.ok ? 'ok' : `err ${event.outcome.error.code}`}`;
    case 'timer':
      return `timer ${event.timer.kind} ${event.timer.step}#${event.timer.attempt}${event.timer.compensation ? ' undo' : ''}`;
    case 'signal':
      return `signal ${event.name}`;
    case 'retry_step':
    case 'skip_step':
      return `${event.type} ${event.step}`;
    case 'resume_compensation':
      return `resume_compensation${event.skip ? ' skip' : ''}`;
    default:
      return event.type;
  }
}
