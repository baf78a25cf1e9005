import type { ErrorInfo } from './errors';
import { mergedCopy, shallowCopy } from './shallow-copy';

/** The states of a run (SPEC §3). */
export const RunState = {
  Pending: 'pending',
  Running: 'running',
  Waiting: 'waiting',
  Completed: 'completed',
  Failed: 'failed',
  Compensating: 'compensating',
  Compensated: 'compensated',
  CompensationFailed: 'compensation_failed',
  Cancelling: 'cancelling',
  Cancelled: 'cancelled',
} as const;
/** One of {@link RunState}'s values. */
export type RunState = (typeof RunState)[keyof typeof RunState];

/** Terminal states are final: nothing moves a run out of them. */
export const TERMINAL_RUN_STATES: ReadonlySet<RunState> = new Set<RunState>([
  RunState.Completed,
  RunState.Failed,
  RunState.Compensated,
  RunState.CompensationFailed,
  RunState.Cancelled,
]);

/** True when `state` is terminal. */
export function isTerminalRunState(state: RunState): boolean {
  return TERMINAL_RUN_STATES.has(state);
}

/** The states of one step of a run. */
export const StepStatus = {
  Pending: 'pending',
  Running: 'running',
  /** Waiting for a retry timer after a failed attempt. */
  Retrying: 'retrying',
  /** A wait step waiting for its signal, or a sleep step sleeping. */
  Waiting: 'waiting',
  Completed: 'completed',
  Skipped: 'skipped',
  Failed: 'failed',
  Cancelled: 'cancelled',
  Compensating: 'compensating',
  Compensated: 'compensated',
  CompensationFailed: 'compensation_failed',
} as const;
/** One of {@link StepStatus}'s values. */
export type StepStatus = (typeof StepStatus)[keyof typeof StepStatus];

/** One attempt of a step or of its compensation. */
export interface AttemptRecord {
  readonly attempt: number;
  /** When the command was sent. */
  readonly startedAt: number;
  /** When a worker-manager said it took the command (steps with a schedule-to-start timeout). */
  pickedUpAt?: number;
  endedAt?: number;
  outcome?: 'completed' | 'failed' | 'timed_out';
  error?: ErrorInfo;
}

/** The compensation of one step, once it has begun. */
export interface CompensationRecord {
  status: 'running' | 'retrying' | 'completed' | 'failed' | 'skipped';
  attempt: number;
  attempts: AttemptRecord[];
  startedAt: number;
  endedAt?: number;
  error?: ErrorInfo;
  /** Attempts made before the current series (see {@link StepRecord.attemptBase}); absent: 0. */
  attemptBase?: number;
}

/** What a run knows about one of its steps. */
export interface StepRecord {
  readonly name: string;
  status: StepStatus;
  /**
   * The current (or last) attempt number, 1-based; 0 before the first. A wait or sleep step has
   * no attempts: there it counts the times an operator action restarted the step.
   */
  attempt: number;
  attempts: AttemptRecord[];
  /**
   * Attempts made before the current series; absent: 0. An operator retry starts a fresh series:
   * attempt numbers (and so command ids) go on, while the retry budget and backoff count from here.
   */
  attemptBase?: number;
  startedAt?: number;
  endedAt?: number;
  output?: unknown;
  error?: ErrorInfo;
  /**
   * Order in which the step completed within the run (1, 2, …), or, for a step not completed, in
   * which an attempt of it first declared partial effects: compensation runs in reverse.
   */
  completedSeq?: number;
  /**
   * Order in which the step's output entered the context (1, 2, …; absent: no output). With
   * {@link outputKey} it makes the context a function of the input and the step records, so a
   * store keeps each output once and rebuilds the context on read (see `rebuildContext`).
   */
  outputSeq?: number;
  /** The context key the output went under; absent: the output was merged into the context. */
  outputKey?: string;
  /** When the current attempt last sent a heartbeat (heartbeat timeouts count from here). */
  heartbeatAt?: number;
  /**
   * Set once an attempt of the current series failed declaring partial effects (possibly while
   * the step is retried), so the step is compensated however it ends; cleared when it completes.
   */
  partialEffects?: boolean;
  compensation?: CompensationRecord;
}

/**
 * The context a run's step records imply: the input, then each step's output in the order it
 * arrived (under its `outputKey`, or merged when it is an object). The engine keeps `context`
 * equal to this, so stores need not write the context at all.
 */
export function rebuildContext(
  input: Readonly<Record<string, unknown>>,
  steps: Readonly<Record<string, StepRecord>>,
): Record<string, unknown> {
  const outputs = Object.values(steps)
    .filter((record) => record.outputSeq !== undefined)
    .sort((a, b) => (a.outputSeq as number) - (b.outputSeq as number));
  let context: Record<string, unknown> = shallowCopy(input);
  for (const record of outputs) {
    const output = record.output;
    if (record.outputKey !== undefined) context = mergedCopy(context, { [record.outputKey]: output });
    else if (typeof output === 'object' && output !== null && !Array.isArray(output)) {
      context = mergedCopy(context, output);
    }
  }
  return context;
}

/** What a run's agent steps spent, summed over their attempts (failed ones included: they were paid). */
export interface RunUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Cost in USD where the price of the model was known. */
  costUsd: number;
  /** Agent attempts whose usage was counted. */
  attempts: number;
}

/** A saga: one run of a pinned workflow definition. */
export interface Run {
  readonly txId: string;
  readonly workflowId: string;
  readonly workflowVersion: number;
  state: RunState;
  readonly input: Record<string, unknown>;
  context: Record<string, unknown>;
  steps: Record<string, StepRecord>;
  readonly createdAt: number;
  updatedAt: number;
  startedAt?: number;
  endedAt?: number;
  readonly idempotencyKey?: string;
  /** Signals that arrived before a wait step asked for them, oldest first, by name. */
  signals: Record<string, unknown[]>;
  /** Counter behind `completedSeq`. */
  completedCount: number;
  /** Counter behind `outputSeq`. */
  outputCount: number;
  /** Steps still to undo, newest completion first; the head is the one compensating now. */
  compensationQueue?: string[];
  /** Why the run is failing, compensating or failed. */
  error?: ErrorInfo;
  /** Set once a cancel was requested (the run unwinds like a failure, ending `cancelled`). */
  cancelRequested?: boolean;
  /** What the run's agent steps spent so far (absent until one reported usage). */
  usage?: RunUsage;
  /** W3C trace headers captured at start; copied onto every message of the run. */
  readonly traceHeaders?: Readonly<Record<string, string>>;
}
