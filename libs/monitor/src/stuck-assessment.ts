import { EventType, RunState, StepStatus, type Run } from '@multiagents/contracts';
import type { TimelineEntry } from '@multiagents/core';

/** What {@link retryDueAt} reads of a timeline entry. */
export type TimelineEntryLike = Pick<TimelineEntry, 'time' | 'events'>;

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
  /** Waiting for a retry's backoff timer: when it is due is read from the timeline. */
  | { readonly kind: 'retry-timer'; readonly lastProgressAt: number; readonly steps: readonly string[] }
  | { readonly kind: 'moving'; readonly lastProgressAt: number; readonly steps: readonly string[] };

/**
 * Where a run stands for the stuck-run watchdog: when it last moved (its last transition, or the
 * last heartbeat of a step it runs) and which steps are in flight. A run waiting for a signal, a
 * sleep or a retry's backoff timer is not stuck for as long as that wait lasts.
 */
export function assessRun(run: Run): Assessment {
  if (!WATCHED_STATES.includes(run.state)) return { kind: 'not-watched' };
  let lastProgressAt = run.updatedAt;
  let retrying = false;
  const steps: string[] = [];
  for (const record of Object.values(run.steps)) {
    if (record.status === StepStatus.Waiting) return { kind: 'not-watched' };
    if (record.status === StepStatus.Retrying || record.compensation?.status === 'retrying') retrying = true;
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
  return { kind: retrying ? 'retry-timer' : 'moving', lastProgressAt, steps };
}

/**
 * When the retry timer the timeline's last transition set is due (its `step.retrying` events'
 * `delayMs` after the transition), or undefined when the last transition set none.
 */
export function retryDueAt(timeline: readonly TimelineEntryLike[]): number | undefined {
  const last = timeline[timeline.length - 1];
  if (last === undefined) return undefined;
  let due: number | undefined;
  for (const event of last.events) {
    const delay = event['delayMs'];
    if (event.type === EventType.StepRetrying && typeof delay === 'number' && Number.isFinite(delay)) {
      due = Math.max(due ?? 0, last.time + delay);
    }
  }
  return due;
}
