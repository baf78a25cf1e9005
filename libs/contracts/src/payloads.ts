import type { ErrorInfo } from './errors';
import type { EventType } from './event-types';
import type { RunState } from './run';

/** Payload of `step.command`: what a worker-manager needs to run one attempt. */
export interface StepCommandPayload {
  /** `<txId>:<step>:<attempt>`, or `<txId>:<step>:undo:<attempt>` for a compensation. */
  readonly commandId: string;
  readonly worker: string;
  readonly input: unknown;
  /** The same for every attempt of one step of one run: `<txId>:<step>` (`:undo` for compensations). */
  readonly idempotencyKey: string;
  readonly compensation: boolean;
  /** Per-attempt timeout; the worker's AbortSignal fires when it passes. */
  readonly timeoutMs?: number;
  readonly heartbeatTimeoutMs?: number;
  /**
   * Set when the step has a schedule-to-start timeout: the worker-manager says it took the
   * command (a `step.heartbeat` with `{ started: true }`), or the attempt fails with NO_WORKER.
   */
  readonly scheduleToStartTimeoutMs?: number;
}

/** Payload of `step.result`. */
export type StepResultPayload =
  | { readonly commandId: string; readonly worker: string; readonly ok: true; readonly output: unknown }
  | { readonly commandId: string; readonly worker: string; readonly ok: false; readonly error: ErrorInfo };

/** Payload of `step.cancel`: the command ids of attempts in flight a run no longer wants, and why. */
export interface StepCancelPayload {
  readonly commandIds: readonly string[];
  readonly reason: string;
}

/** Payload of `step.heartbeat`: a long step says it is alive. */
export interface StepHeartbeatPayload {
  readonly commandId: string;
  readonly details?: unknown;
}

/**
 * Payload of `step.progress`: what one attempt reported since its previous `step.progress`
 * (coalesced by the worker-manager, which publishes at a bounded rate).
 */
export interface StepProgressPayload {
  readonly commandId: string;
  /**
   * 1, 2, 3… per attempt, in publication order: a watcher orders by it and sees gaps (the bus may
   * reorder or, for this best-effort event, lose messages).
   */
  readonly seq: number;
  /** Text appended to named output fields since the previous `step.progress`, in order. */
  readonly deltas?: Readonly<Record<string, string>>;
  /** The worker's latest status report (JSON data), when it sent one since the previous event. */
  readonly status?: unknown;
  /** Characters of delta text dropped because the bus could not keep up; absent when none. */
  readonly droppedChars?: number;
}

/** Payload of `worker.heartbeat`: a worker-manager announces what it serves. */
export interface WorkerHeartbeatPayload {
  readonly managerId: string;
  readonly workers: readonly string[];
  /** Attempts in flight over all its workers. */
  readonly inFlight: number;
  /**
   * Handlers still running after their attempt ended (they ignored their abort signal at a
   * timeout, a cancel or a drain), over all its workers: each still holds a slot, so the replica
   * runs `inFlight + lingering` handlers. Absent from worker-managers older than this field: read
   * it as 0.
   */
  readonly lingering?: number;
}

/**
 * One lifecycle event (one of `LIFECYCLE_EVENT_TYPES`) inside a `workflow.transitioned` message:
 * its kind, the run's state right after it, the step and attempt it concerns, and its details
 * (`durationMs`, `error`, `delayMs`, `worker`, `compensation`, `steps`…). `durationMs` is the
 * step's time on `step.completed` and `step.failed`, the compensation's on `compensation.completed`
 * and `compensation.failed`, and the run's, from its creation, on the event that ends it.
 */
export interface LifecycleEvent {
  readonly type: EventType;
  readonly state: RunState;
  readonly step?: string;
  readonly attempt?: number;
  readonly [detail: string]: unknown;
}

/**
 * Payload of `workflow.transitioned`: the run's version after the transition (the message id is
 * `<txId>:v<version>`, so a repeated publish is recognisably the same), its state, and the
 * lifecycle events in the order they happened. The envelope's `time` is when it happened.
 */
export interface TransitionEventPayload {
  readonly version: number;
  readonly state: RunState;
  readonly events: readonly LifecycleEvent[];
}
