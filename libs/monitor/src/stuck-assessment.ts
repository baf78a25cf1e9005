import { EventType, RunState, StepStatus, type Run } from '@multiagents/contracts';
import type { TimelineEntry } from '@multiagents/core';

/** What {@link retryDueAt} reads of a timeline entry. */
export type TimelineEntryLike = Pick<TimelineEntry, 'time' | 'events'>;

/** A step (or its compensation) waiting for a retry's backoff timer, as its run's record says. */
export interface RetryingStep {
  readonly name: string;
  /** The attempt that failed and scheduled the retry (its `step.retrying` event carries it). */
  readonly attempt: number;
  /** True when it is the step's compensation that is retrying. */
  readonly compensation: boolean;
}

/** The run states the watchdog watches: a run in any other state is terminal or waiting on purpose. */
export const WATCHED_STATES: readonly RunState[] = [
  RunState.Pending,
  RunState.Running,
  RunState.Compensating,
  RunState.Cancelling,
];

/** What {@link assessRun} found. */
export type Assessment =
  /** Not watched: terminal, or waiting for a signal or a sleep. */
  | { readonly kind: 'not-watched' }
  /** Waiting for the backoff timers of `retrying`: when they are due is read from the timeline. */
  | {
      readonly kind: 'retry-timer';
      readonly lastProgressAt: number;
      readonly steps: readonly string[];
      readonly retrying: readonly RetryingStep[];
    }
  | { readonly kind: 'moving'; readonly lastProgressAt: number; readonly steps: readonly string[] };

/**
 * Where a run stands for the stuck-run watchdog: when it last moved (its last transition, or the
 * last heartbeat of a step it runs) and which steps are in flight. A run waiting for a signal, a
 * sleep or a retry's backoff timer is not stuck for as long as that wait lasts.
 */
export function assessRun(run: Run): Assessment {
  if (!WATCHED_STATES.includes(run.state)) return { kind: 'not-watched' };
  let lastProgressAt = run.updatedAt;
  const retrying: RetryingStep[] = [];
  const steps: string[] = [];
  for (const record of Object.values(run.steps)) {
    if (record.status === StepStatus.Waiting) return { kind: 'not-watched' };
    if (record.status === StepStatus.Retrying)
      retrying.push({ name: record.name, attempt: record.attempt, compensation: false });
    if (record.compensation?.status === 'retrying')
      retrying.push({ name: record.name, attempt: record.compensation.attempt, compensation: true });
    if (
      record.status === StepStatus.Running ||
      record.status === StepStatus.Retrying ||
      record.status === StepStatus.Compensating
    ) {
      steps.push(record.name);
    }
    if (record.heartbeatAt !== undefined && record.heartbeatAt > lastProgressAt)
      lastProgressAt = record.heartbeatAt;
  }
  return retrying.length > 0
    ? { kind: 'retry-timer', lastProgressAt, steps, retrying }
    : { kind: 'moving', lastProgressAt, steps };
}

/**
 * When the backoff timers of the `retrying` steps are all due (each one `delayMs` after the
 * transition whose `step.retrying` of that step, attempt and kind scheduled it), or undefined when
 * the timeline lacks the event of one of them. Each is searched from the end: the transition that
 * scheduled a retry need not be the run's last one (a parallel branch may have moved since).
 */
export function retryDueAt(
  timeline: readonly TimelineEntryLike[],
  retrying: readonly RetryingStep[],
): number | undefined {
  if (retrying.length === 0) return undefined;
  let due = Number.NEGATIVE_INFINITY;
  for (const step of retrying) {
    const stepDue = scheduledBy(timeline, step);
    if (stepDue === undefined) return undefined;
    due = Math.max(due, stepDue);
  }
  return due;
}

/** When the retry timer of `step` is due, from the last `step.retrying` of it; undefined when none. */
function scheduledBy(timeline: readonly TimelineEntryLike[], step: RetryingStep): number | undefined {
  for (let i = timeline.length - 1; i >= 0; i -= 1) {
    const entry = timeline[i] as TimelineEntryLike;
    for (let j = entry.events.length - 1; j >= 0; j -= 1) {
      const event = entry.events[j] as TimelineEntryLike['events'][number];
      const delay = event['delayMs'];
      if (
        event.type === EventType.StepRetrying &&
        event.step === step.name &&
        (event.attempt === undefined || event.attempt === step.attempt) &&
        (event['compensation'] === true) === step.compensation &&
        typeof delay === 'number' &&
        Number.isFinite(delay)
      ) {
        return entry.time + delay;
      }
    }
  }
  return undefined;
}
