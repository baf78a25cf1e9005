import type { Envelope, LifecycleEvent, Run, RunState, StepCommandPayload } from '@multiagents/contracts';
import type { Timer } from './timer';

/** W3C trace headers (`traceparent`, `tracestate`) as they travel on envelopes and in run records. */
export type TraceHeaders = Readonly<Record<string, string>>;

/** What caused a transition. */
export type TransitionCause = 'start' | 'result' | 'heartbeat' | 'timer' | 'signal' | 'cancel' | 'operator';

/** A committed transition, as observers see it. */
export interface CommittedTransition {
  /** The run after the transition. */
  readonly run: Run;
  /** Its state before (`pending` for a new run). */
  readonly previousState: RunState;
  /** The run's version after the transition. */
  readonly version: number;
  readonly cause: TransitionCause;
  readonly lifecycle: readonly LifecycleEvent[];
  /** The commands the transition sent (with the headers observers gave them). */
  readonly commands: readonly Envelope<StepCommandPayload>[];
  /** The durable timers the transition scheduled (sleeps, wait deadlines, retries, timeouts). */
  readonly schedule: readonly Timer[];
  /** When the transition was decided (ms since the epoch). */
  readonly at: number;
}

/**
 * What an orchestrator tells the outside about its work: the seam tracing, metrics and logs plug
 * into (libs/telemetry implements it with OpenTelemetry and prom-client; core never imports
 * them). Every method is optional and must not throw; the orchestrator calls them on its hot
 * path, so they must be cheap. Several observers combine with {@link combineObservers}.
 */
export interface OrchestratorObserver {
  /**
   * A run is about to be created: returns the trace headers the run keeps for its whole life (the
   * context of its root span), given the caller's (from gRPC metadata; empty when none). The run
   * record stores them, so a run resumed by another process, or after a restart, stays in its
   * trace.
   */
  runStarting?(start: {
    readonly workflowId: string;
    readonly txId: string;
    readonly callerHeaders: TraceHeaders;
  }): TraceHeaders | undefined;
  /**
   * A transition is about to send commands: returns the headers each command carries (the
   * context of its dispatch span, a child of the run's), by command id. `redispatch` is true when
   * commands are sent again because their results did not come.
   */
  dispatching?(
    run: Run,
    commands: readonly Envelope<StepCommandPayload>[],
    redispatch: boolean,
  ): ReadonlyMap<string, TraceHeaders> | undefined;
  /** A transition was committed. */
  committed?(transition: CommittedTransition): void;
  /** An event changed nothing (a duplicate or late result, a stale timer…). */
  ignored?(txId: string, cause: TransitionCause, reason: string): void;
  /** A write was refused because another writer changed the run first. */
  conflicted?(txId: string): void;
  /** A result arrived for a run the store does not have. */
  unknownRun?(txId: string): void;
}

/** The outcome of one worker attempt, as observers see it. */
export type AttemptResult =
  | { readonly kind: 'completed' }
  | { readonly kind: 'failed'; readonly code: string; readonly retryable: boolean }
  | { readonly kind: 'aborted' };

/**
 * What a worker-manager tells the outside about each attempt it runs (the seam for the worker's
 * CONSUMER span and its metrics). `attemptStarted` returns the function that ends the attempt,
 * and may return a wrapper that runs the handler inside a tracing context (so logs carry the
 * trace and span ids).
 */
export interface WorkerObserver {
  attemptStarted?(command: ObservedCommand, info: AttemptInfo): AttemptScope | undefined;
}

/** Where and how often a command was delivered, as a worker-manager observer sees it. */
export interface AttemptInfo {
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  /** The consuming replica (its consumer name in the group). */
  readonly managerId: string;
  /** The bus topic the command came from. */
  readonly topic: string;
  /** The consumer group that took it. */
  readonly group: string;
  /** The backend's id of the delivered message. */
  readonly messageId: string;
}

/** A command as a worker-manager observer sees it (a checked `step.command`). */
export interface ObservedCommand {
  readonly txId: string;
  readonly workflowId: string;
  readonly step: string;
  readonly attempt: number;
  /** The command's trace headers (its dispatch span's context). */
  readonly headers: TraceHeaders;
  readonly payload: StepCommandPayload;
}

/** One observed attempt: run the handler within it, then end it with the outcome. */
export interface AttemptScope {
  /** Runs `work` inside the attempt's context (e.g. its active span). */
  run<T>(work: () => T): T;
  /**
   * Fields every log line of the attempt carries (e.g. `trace_id`, `span_id`): passed explicitly,
   * so no context has to travel through async hooks.
   */
  readonly logFields?: Readonly<Record<string, string>>;
  /** The W3C trace context of the attempt's span, handed to the handler (`ctx.traceHeaders`). */
  readonly traceHeaders?: TraceHeaders;
  end(result: AttemptResult): void;
}

/** Calls each observer in turn; a missing method is skipped. The first defined answer wins. */
export function combineObservers(observers: readonly OrchestratorObserver[]): OrchestratorObserver {
  if (observers.length === 1) return observers[0] as OrchestratorObserver;
  return {
    runStarting: (start) => {
      let headers: TraceHeaders | undefined;
      for (const o of observers) headers ??= o.runStarting?.(start);
      return headers;
    },
    dispatching: (run, commands, redispatch) => {
      let headers: ReadonlyMap<string, TraceHeaders> | undefined;
      for (const o of observers) headers ??= o.dispatching?.(run, commands, redispatch);
      return headers;
    },
    committed: (transition) => {
      for (const o of observers) o.committed?.(transition);
    },
    ignored: (txId, cause, reason) => {
      for (const o of observers) o.ignored?.(txId, cause, reason);
    },
    conflicted: (txId) => {
      for (const o of observers) o.conflicted?.(txId);
    },
    unknownRun: (txId) => {
      for (const o of observers) o.unknownRun?.(txId);
    },
  };
}
