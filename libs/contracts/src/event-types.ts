/** Every message type on the bus (SPEC §5). Names read `<entity>.<past-tense verb>`. */
export const EventType = {
  StepCommand: 'step.command',
  StepResult: 'step.result',
  StepHeartbeat: 'step.heartbeat',
  /**
   * Asks the worker-managers to fire `ctx.signal` of attempts a run no longer wants (it was
   * cancelled, or a failure began its unwinding while they ran), broadcast on `Topics.control`.
   * Its payload is a {@link StepCancelPayload}. Advisory: the run still awaits each attempt, whose
   * outcome counts as any other (a handler that completes anyway is compensated).
   */
  StepCancel: 'step.cancel',
  WorkflowStarted: 'workflow.started',
  StepStarted: 'step.started',
  StepCompleted: 'step.completed',
  StepFailed: 'step.failed',
  StepRetrying: 'step.retrying',
  StepSkipped: 'step.skipped',
  WorkflowWaiting: 'workflow.waiting',
  WorkflowCompensating: 'workflow.compensating',
  CompensationCompleted: 'compensation.completed',
  CompensationFailed: 'compensation.failed',
  WorkflowCompleted: 'workflow.completed',
  WorkflowFailed: 'workflow.failed',
  WorkflowCompensated: 'workflow.compensated',
  WorkflowCancelled: 'workflow.cancelled',
  WorkflowStuck: 'workflow.stuck',
  /**
   * Partial output of a running attempt (an agent's token deltas), on `Topics.events`. Not part of
   * the run's history and not a lifecycle event: bounded in rate, and may be dropped.
   */
  StepProgress: 'step.progress',
  WorkerHeartbeat: 'worker.heartbeat',
  /**
   * One message per committed transition of a run, carrying every lifecycle event the transition
   * produced (SPEC §5): what observers consume. Its payload is a {@link TransitionEventPayload}.
   */
  WorkflowTransitioned: 'workflow.transitioned',
} as const;
/** One of {@link EventType}'s values. */
export type EventType = (typeof EventType)[keyof typeof EventType];

const ALL_EVENT_TYPES: ReadonlySet<string> = new Set(Object.values(EventType));

/** True for the strings that name a known event type. */
export function isEventType(value: string): value is EventType {
  return ALL_EVENT_TYPES.has(value);
}

/** Lifecycle events: what observers (event-monitor, metrics-collector) consume. */
export const LIFECYCLE_EVENT_TYPES: readonly EventType[] = [
  EventType.WorkflowStarted,
  EventType.StepStarted,
  EventType.StepCompleted,
  EventType.StepFailed,
  EventType.StepRetrying,
  EventType.StepSkipped,
  EventType.WorkflowWaiting,
  EventType.WorkflowCompensating,
  EventType.CompensationCompleted,
  EventType.CompensationFailed,
  EventType.WorkflowCompleted,
  EventType.WorkflowFailed,
  EventType.WorkflowCompensated,
  EventType.WorkflowCancelled,
  EventType.WorkflowStuck,
];
