import {
  EventType,
  isTerminalRunState,
  RunState,
  Topics,
  type Envelope,
  type Run,
  type StepCommandPayload,
} from '@multiagents/contracts';
import {
  LruMap,
  type CommittedTransition,
  type OrchestratorObserver,
  type TraceHeaders,
} from '@multiagents/core';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { Attr, SpanName } from './attributes';
import { contextFromHeaders, formatTraceHeaders, isSampled, TRACEPARENT, TRACESTATE } from './trace-context';

/** Options of {@link OrchestratorTracing}. */
export interface OrchestratorTracingOptions {
  /** `messaging.system` of the dispatch spans: the backend's bus (`redis`, `nats`, `memory`). */
  readonly messagingSystem: string;
  /**
   * Runs whose spans may wait for their transition's write at once (start and dispatch spans
   * are exported only once the write that sends them succeeds). Beyond it the oldest are
   * dropped, unexported. Default {@link DEFAULT_PENDING_RUNS}.
   */
  readonly maxPendingRuns?: number;
  /** Wait and sleep steps remembered between their start and end, at most. */
  readonly maxWaitingSteps?: number;
}

/** Default of {@link OrchestratorTracingOptions.maxPendingRuns}. */
export const DEFAULT_PENDING_RUNS = 10_000;
/** Default of {@link OrchestratorTracingOptions.maxWaitingSteps}. */
export const DEFAULT_WAITING_STEPS = 100_000;

/** Spans made for a transition not written yet: ended when it is, dropped when it is not. */
interface Pending {
  root?: Span;
  readonly dispatches: Map<string, Span>;
}

/** A wait or sleep step between its start and its end (kept in memory only). */
interface Waiting {
  readonly kind: 'wait' | 'sleep';
  readonly startedAt: number;
  readonly signal?: string;
  readonly timeoutMs?: number;
}

const FAILED_OUTCOMES: ReadonlySet<string> = new Set<string>([
  RunState.Failed,
  RunState.Compensated,
  RunState.CompensationFailed,
]);

const STEP_ENDED: ReadonlySet<string> = new Set<string>([
  EventType.StepCompleted,
  EventType.StepFailed,
  EventType.StepSkipped,
]);

/**
 * The orchestrator's half of one trace per run, on the core's observer seam. Every span is built
 * from what the transition and the run record say, with explicit parents (the run's
 * `traceparent`) and explicit times: no context manager, no span open across a restart, and for
 * a run that is not sampled nothing but one string check per call.
 *
 * - `workflow.start <workflowId>`: the root, a child of the caller's `traceparent` when there is
 *   one; its context is what the run record keeps.
 * - `step <name>` / `compensate <name>`: one PRODUCER span per command sent (again: redispatch).
 * - `wait <name>` / `sleep <name>`: from the step's start to its end, with the timeout (known when
 *   this process saw the step start; a step that began before a restart gets its span too).
 * - `workflow.run <workflowId>`: from the run's creation to its terminal state, with the outcome.
 *
 * @example
 * const orchestrator = new Orchestrator({ ...backend, observer: new OrchestratorTracing(tracer, { messagingSystem: 'redis' }) });
 */
export class OrchestratorTracing implements OrchestratorObserver {
  private readonly messagingSystem: string;
  private readonly pending: LruMap<string, Pending>;
  private readonly waiting: LruMap<string, Waiting>;

  constructor(
    private readonly tracer: Tracer,
    options: OrchestratorTracingOptions,
  ) {
    this.messagingSystem = options.messagingSystem;
    this.pending = new LruMap(options.maxPendingRuns ?? DEFAULT_PENDING_RUNS);
    this.waiting = new LruMap(options.maxWaitingSteps ?? DEFAULT_WAITING_STEPS);
  }

  runStarting(start: {
    readonly workflowId: string;
    readonly txId: string;
    readonly callerHeaders: TraceHeaders;
  }): TraceHeaders | undefined {
    const span = this.tracer.startSpan(
      `${SpanName.WorkflowStart} ${start.workflowId}`,
      { kind: SpanKind.SERVER },
      start.callerHeaders[TRACEPARENT] === undefined ? ROOT_CONTEXT : contextFromHeaders(start.callerHeaders),
    );
    // Not sampled: the run keeps the caller's headers (if any), and costs nothing more.
    if (!span.isRecording()) return undefined;
    // Set only now: an unsampled start does not pay for attributes nobody reads.
    span.setAttribute(Attr.RunId, start.txId);
    span.setAttribute(Attr.WorkflowId, start.workflowId);
    this.pendingFor(start.txId).root = span;
    return formatTraceHeaders(span.spanContext());
  }

  dispatching(
    run: Run,
    commands: readonly Envelope<StepCommandPayload>[],
    redispatch: boolean,
  ): ReadonlyMap<string, TraceHeaders> | undefined {
    if (!isSampled(run.traceHeaders)) return undefined;
    const parent = contextFromHeaders(run.traceHeaders);
    const headers = new Map<string, TraceHeaders>();
    const pending = redispatch ? undefined : this.pendingFor(run.txId);
    for (const command of commands) {
      const { payload } = command;
      const step = command.step ?? '';
      const attributes: Attributes = {
        [Attr.RunId]: run.txId,
        [Attr.WorkflowId]: run.workflowId,
        [Attr.StepName]: step,
        [Attr.Attempt]: command.attempt ?? 0,
        [Attr.Worker]: payload.worker,
        [Attr.MessagingSystem]: this.messagingSystem,
        [Attr.MessagingOperationType]: 'send',
        [Attr.MessagingDestinationName]: Topics.command(payload.worker),
        [Attr.MessagingMessageId]: command.id,
      };
      if (payload.compensation) attributes[Attr.Compensation] = true;
      if (redispatch) attributes[Attr.Redispatch] = true;
      if (payload.timeoutMs !== undefined) attributes[Attr.TimeoutMs] = payload.timeoutMs;
      const span = this.tracer.startSpan(
        `${payload.compensation ? SpanName.Compensate : SpanName.Step} ${step}`,
        { kind: SpanKind.PRODUCER, attributes },
        parent,
      );
      const own = formatTraceHeaders(span.spanContext());
      const state = run.traceHeaders?.[TRACESTATE];
      headers.set(command.id, state === undefined ? own : { ...own, [TRACESTATE]: state });
      // A command sent again is published at once, outside any transition.
      if (pending === undefined) span.end();
      else pending.dispatches.set(command.id, span);
    }
    return headers;
  }

  committed(transition: CommittedTransition): void {
    const { run } = transition;
    const pending = this.pending.get(run.txId);
    if (pending !== undefined) {
      this.pending.delete(run.txId);
      if (transition.cause === 'start') pending.root?.end();
      for (const command of transition.commands) pending.dispatches.get(command.id)?.end();
      // Spans of commands a conflicting write decided are never ended, so never exported.
    }
    if (!isSampled(run.traceHeaders)) return;
    for (const event of transition.lifecycle) {
      if (event.step === undefined) continue;
      if (event.type === EventType.StepStarted && (event['kind'] === 'wait' || event['kind'] === 'sleep')) {
        this.stepWaiting(transition, event.step, event['kind'], event['signal']);
      } else if (STEP_ENDED.has(event.type)) {
        this.stepEnded(transition, event.step, event['kind'], event['signal']);
      }
    }
    if (isTerminalRunState(run.state) && !isTerminalRunState(transition.previousState)) {
      this.runEnded(transition);
    }
  }

  conflicted(txId: string): void {
    this.pending.delete(txId);
  }

  private pendingFor(txId: string): Pending {
    let pending = this.pending.get(txId);
    if (pending === undefined) {
      pending = { dispatches: new Map() };
      this.pending.set(txId, pending);
    }
    return pending;
  }

  private stepWaiting(
    transition: CommittedTransition,
    step: string,
    kind: 'wait' | 'sleep',
    signal: unknown,
  ): void {
    const timer = transition.schedule.find((t) => t.payload.step === step && t.payload.kind === kind);
    const record = transition.run.steps[step];
    this.waiting.set(`${transition.run.txId}\u0000${step}`, {
      kind,
      startedAt: record?.startedAt ?? transition.at,
      ...(typeof signal === 'string' ? { signal } : {}),
      ...(timer === undefined ? {} : { timeoutMs: timer.dueAt - transition.at }),
    });
  }

  private stepEnded(transition: CommittedTransition, step: string, kind: unknown, signal: unknown): void {
    const key = `${transition.run.txId}\u0000${step}`;
    const { run } = transition;
    const record = run.steps[step];
    // A wait or sleep that began before this process did (an orchestrator restarted, another one
    // took over) is rebuilt from its end event and the run record: its kind and signal, its start.
    const waiting =
      this.waiting.get(key) ??
      ((kind === 'wait' || kind === 'sleep') && record?.startedAt !== undefined
        ? { kind, startedAt: record.startedAt, ...(typeof signal === 'string' ? { signal } : {}) }
        : undefined);
    if (waiting === undefined) return;
    this.waiting.delete(key);
    const outcome = record?.status ?? 'ended';
    const attributes: Attributes = {
      [Attr.RunId]: run.txId,
      [Attr.WorkflowId]: run.workflowId,
      [Attr.StepName]: step,
      [Attr.Outcome]: outcome,
    };
    if (waiting.signal !== undefined) attributes[Attr.SignalName] = waiting.signal;
    if (waiting.timeoutMs !== undefined) attributes[Attr.TimeoutMs] = waiting.timeoutMs;
    const span = this.tracer.startSpan(
      `${waiting.kind} ${step}`,
      { kind: SpanKind.INTERNAL, attributes, startTime: waiting.startedAt },
      contextFromHeaders(run.traceHeaders),
    );
    if (record?.error !== undefined) {
      span.setAttribute(Attr.ErrorType, record.error.code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: record.error.message });
    }
    span.end(record?.endedAt ?? transition.at);
  }

  private runEnded(transition: CommittedTransition): void {
    const { run } = transition;
    for (const step of Object.keys(run.steps)) this.waiting.delete(`${run.txId}\u0000${step}`);
    const span = this.tracer.startSpan(
      `${SpanName.WorkflowRun} ${run.workflowId}`,
      {
        kind: SpanKind.INTERNAL,
        startTime: run.createdAt,
        attributes: {
          [Attr.RunId]: run.txId,
          [Attr.WorkflowId]: run.workflowId,
          [Attr.WorkflowVersion]: run.workflowVersion,
          [Attr.Outcome]: run.state,
        },
      },
      contextFromHeaders(run.traceHeaders),
    );
    if (FAILED_OUTCOMES.has(run.state)) {
      const code = run.error?.code ?? run.state;
      span.setAttribute(Attr.ErrorType, code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: run.error?.message ?? run.state });
    }
    span.end(transition.at);
  }
}
