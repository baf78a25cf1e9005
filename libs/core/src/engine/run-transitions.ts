import { IllegalTransitionError, RunState } from '@multiagents/contracts';

const ALLOWED: Readonly<Record<RunState, readonly RunState[]>> = {
  [RunState.Pending]: [RunState.Running, RunState.Cancelling],
  [RunState.Running]: [
    RunState.Waiting,
    RunState.Completed,
    RunState.Failed,
    RunState.Compensating,
    RunState.Cancelling,
  ],
  [RunState.Waiting]: [
    RunState.Running,
    RunState.Completed,
    RunState.Failed,
    RunState.Compensating,
    RunState.Cancelling,
  ],
  [RunState.Compensating]: [RunState.Compensated, RunState.CompensationFailed],
  [RunState.Cancelling]: [RunState.Cancelled, RunState.CompensationFailed],
  [RunState.Completed]: [],
  [RunState.Failed]: [],
  [RunState.Compensated]: [],
  [RunState.CompensationFailed]: [],
  [RunState.Cancelled]: [],
};

/** True when SPEC §3 allows `from` → `to`. */
export function canTransition(from: RunState, to: RunState): boolean {
  return ALLOWED[from].includes(to);
}

/** Throws IllegalTransitionError unless `from` → `to` is allowed. */
export function assertTransition(from: RunState, to: RunState, txId?: string): void {
  if (!canTransition(from, to)) throw new IllegalTransitionError(from, to, txId);
}

/**
 * The only ways out of a terminal state, each taken by an operator action alone (`retry_step`,
 * `skip_step`, `resume_compensation`; SPEC §3 "operator may retry or skip"): a failed run goes on
 * running once its failed step is retried or skipped; a run stuck in compensation_failed goes back
 * to unwinding (cancelling, if a cancel started the unwinding). Kept apart from the table above,
 * which still says that a terminal state is final for everything else.
 */
const OPERATOR_ALLOWED: Readonly<Partial<Record<RunState, readonly RunState[]>>> = {
  [RunState.Failed]: [RunState.Running],
  [RunState.CompensationFailed]: [RunState.Compensating, RunState.Cancelling],
};

/** True when an operator action may move a run from `from` to `to`. */
export function canOperatorTransition(from: RunState, to: RunState): boolean {
  return OPERATOR_ALLOWED[from]?.includes(to) ?? false;
}

/** Throws IllegalTransitionError unless an operator action may move a run from `from` to `to`. */
export function assertOperatorTransition(from: RunState, to: RunState, txId?: string): void {
  if (!canOperatorTransition(from, to)) throw new IllegalTransitionError(from, to, txId);
}
