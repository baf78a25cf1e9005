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
