import {
  Topics,
  type Envelope,
  type ErrorInfo,
  type LifecycleEvent,
  type Run,
  type StepCommandPayload,
  type StepRecord,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { timerIdFor, type Timer, type TimerPayload } from '../ports/timer';
import { compileWorkflow, type CompiledWorkflow } from '../definition/validate-definition';
import { commandIdFor, createRun, decide, type Decision, type EngineEvent } from '../engine/saga-engine';
import { deepFreeze } from './test-deep-freeze';

/** Options of {@link SagaDriver}. */
export interface SagaDriverOptions {
  readonly txId?: string;
  readonly input?: Record<string, unknown>;
  readonly now?: number;
  /** Deep-freeze every run before handing it to `decide` (default true): proves `decide` is pure. */
  readonly freeze?: boolean;
}

/** A command the engine published, with its topic. */
export interface SentCommand {
  readonly topic: string;
  readonly envelope: Envelope<StepCommandPayload>;
  readonly payload: StepCommandPayload;
}

/** Builds an ErrorInfo for a failed attempt. */
export function failure(code: string, extra: Partial<ErrorInfo> = {}): ErrorInfo {
  return { code, message: `${code} happened`, retryable: true, ...extra };
}

/** One lifecycle event of a decision, read like an envelope: kind, step, attempt, the rest as payload. */
export interface LifecycleView {
  readonly type: string;
  readonly step?: string;
  readonly attempt?: number;
  /** `state` and the event's details. */
  readonly payload: Record<string, unknown>;
}

/** The commands published by one decision, in order. */
export function commandsOf(decision: Decision): SentCommand[] {
  return decision.commands.map((envelope) => ({
    topic: Topics.command(envelope.payload.worker),
    envelope,
    payload: envelope.payload,
  }));
}

function view(event: LifecycleEvent): LifecycleView {
  const { type, step, attempt, ...payload } = event;
  return {
    type,
    ...(step === undefined ? {} : { step }),
    ...(attempt === undefined ? {} : { attempt }),
    payload,
  };
}

/** The lifecycle events of one decision, in order. */
export function eventsOf(decision: Decision): LifecycleView[] {
  return decision.lifecycle.map(view);
}

/** The timers scheduled by one decision. */
export function schedulesOf(decision: Decision): Timer[] {
  return [...decision.schedule];
}

/** The timer ids unscheduled by one decision. */
export function unschedulesOf(decision: Decision): string[] {
  return [...decision.cancel];
}

/**
 * Feeds events to the pure engine the way the orchestrator would (one decision at a time,
 * carrying out timer effects in an in-memory timer set) and records everything it published,
 * so engine tests read as a story: start, report a result, fire a timer, look at what was sent.
 */
export class SagaDriver {
  readonly workflow: CompiledWorkflow;
  readonly txId: string;
  run: Run;
  now: number;
  /** Timers scheduled and neither unscheduled nor fired, by id. */
  readonly timers = new Map<string, Timer>();
  /** Every command sent, in order, with its topic. */
  readonly published: { topic: string; envelope: Envelope }[] = [];
  readonly decisions: Decision[] = [];
  private readonly freeze: boolean;

  constructor(definition: WorkflowDefinition | CompiledWorkflow, options: SagaDriverOptions = {}) {
    this.workflow =
      'steps' in definition && definition.steps instanceof Map
        ? (definition as CompiledWorkflow)
        : compileWorkflow(definition);
    this.txId = options.txId ?? 'tx-1';
    this.now = options.now ?? 1_000;
    this.freeze = options.freeze ?? true;
    this.run = createRun({
      txId: this.txId,
      workflow: this.workflow.definition,
      input: options.input ?? {},
      now: this.now,
    });
  }

  /** The decision of the last event. */
  get last(): Decision {
    const decision = this.decisions[this.decisions.length - 1];
    if (!decision) throw new Error('no event sent yet');
    return decision;
  }

  /** Sends one event to `decide` and carries out its timer effects. */
  send(event: EngineEvent): Decision {
    const before = this.freeze ? deepFreeze(this.run) : this.run;
    const decision = decide(this.workflow, before, event, this.now);
    this.decisions.push(decision);
    for (const envelope of decision.commands) {
      this.published.push({ topic: Topics.command(envelope.payload.worker), envelope });
    }
    for (const id of decision.cancel) this.timers.delete(id);
    for (const timer of decision.schedule) this.timers.set(timer.id, timer);
    this.run = decision.run;
    return decision;
  }

  start(): Decision {
    return this.send({ type: 'start' });
  }

  /** Moves the clock forward. */
  tick(ms: number): this {
    this.now += ms;
    return this;
  }

  step(name: string): StepRecord {
    const record = this.run.steps[name];
    if (!record) throw new Error(`no step ${name}`);
    return record;
  }

  /** Reports a successful attempt (the current one unless `attempt` is given). */
  ok(step: string, output?: unknown, attempt?: number): Decision {
    const commandId = commandIdFor(this.txId, step, attempt ?? this.step(step).attempt);
    return this.send({ type: 'result', step, commandId, outcome: { ok: true, output } });
  }

  /** Reports a failed attempt (the current one unless `attempt` is given). */
  fail(step: string, error: ErrorInfo, attempt?: number): Decision {
    const commandId = commandIdFor(this.txId, step, attempt ?? this.step(step).attempt);
    return this.send({ type: 'result', step, commandId, outcome: { ok: false, error } });
  }

  /** Reports a successful compensation attempt (the current one unless `attempt` is given). */
  undone(step: string, attempt?: number): Decision {
    const commandId = commandIdFor(
      this.txId,
      step,
      attempt ?? this.step(step).compensation?.attempt ?? 1,
      true,
    );
    return this.send({ type: 'result', step, commandId, outcome: { ok: true, output: undefined } });
  }

  /** Reports a failed compensation attempt. */
  undoFailed(step: string, error: ErrorInfo, attempt?: number): Decision {
    const commandId = commandIdFor(
      this.txId,
      step,
      attempt ?? this.step(step).compensation?.attempt ?? 1,
      true,
    );
    return this.send({ type: 'result', step, commandId, outcome: { ok: false, error } });
  }

  heartbeat(step: string, attempt?: number): Decision {
    const commandId = commandIdFor(this.txId, step, attempt ?? this.step(step).attempt);
    return this.send({ type: 'heartbeat', step, commandId });
  }

  signal(name: string, payload?: unknown): Decision {
    return this.send({ type: 'signal', name, payload });
  }

  cancel(reason?: string): Decision {
    return this.send({ type: 'cancel', ...(reason === undefined ? {} : { reason }) });
  }

  /** Operator action: retries a failed step (or the failed compensation). */
  retryStep(step: string): Decision {
    return this.send({ type: 'retry_step', step });
  }

  /** Operator action: skips a failed step (or the failed compensation). */
  skipStep(step: string, output?: unknown): Decision {
    return this.send({ type: 'skip_step', step, ...(output === undefined ? {} : { output }) });
  }

  /** Operator action: resumes a compensation_failed run, retrying or skipping its failed compensation. */
  resumeCompensation(skip?: boolean): Decision {
    return this.send({ type: 'resume_compensation', ...(skip === undefined ? {} : { skip }) });
  }

  /** The scheduled timer with this payload, or undefined. */
  timer(payload: TimerPayload): Timer | undefined {
    return this.timers.get(timerIdFor(this.txId, payload));
  }

  /** Fires a scheduled timer, moving the clock to its due time; throws if it is not scheduled. */
  fire(payload: TimerPayload): Decision {
    const timer = this.timer(payload);
    if (!timer) throw new Error(`timer ${timerIdFor(this.txId, payload)} is not scheduled`);
    this.timers.delete(timer.id);
    this.now = Math.max(this.now, timer.dueAt);
    return this.send({ type: 'timer', timer: timer.payload });
  }

  /** Delivers a timer event whether or not it is scheduled (a stale or duplicate firing). */
  fireStale(payload: TimerPayload): Decision {
    return this.send({ type: 'timer', timer: payload });
  }

  /** Every command published so far. */
  commands(): SentCommand[] {
    return this.decisions.flatMap(commandsOf);
  }

  /** Every lifecycle event so far. */
  events(): LifecycleView[] {
    return this.decisions.flatMap(eventsOf);
  }

  /** Types of the lifecycle events published so far. */
  eventTypes(): string[] {
    return this.events().map((e) => e.type);
  }
}
