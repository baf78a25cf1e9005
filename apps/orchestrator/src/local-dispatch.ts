import { DEFAULT_ORCHESTRATOR_OPTIONS, type LocalWorkers, type OrchestratorOptions } from '@multiagents/core';

/** The orchestrator settings that decide how a command it sent is recovered. */
type RecoveryOptions = Pick<OrchestratorOptions, 'redispatchAfterMs' | 'recoverySweepIntervalMs'>;

/**
 * The settings of an orchestrator whose process hosts workers (`local`; undefined when it hosts
 * none or eager dispatch is off), on top of its backend's `defaults`. The commands it runs itself
 * are in no stream: when this process dies with them, only a recovery sweep finds their runs
 * again. So it sweeps even on a backend that needs no sweep otherwise (Redis keeps every command
 * it acknowledged), every `redispatchAfterMs` or minute, whichever is shorter; a backend that
 * never sends a command twice (memory: one process) needs none.
 */
export function localDispatchOptions(
  local: LocalWorkers | undefined,
  defaults: RecoveryOptions,
  redispatchAfterMs: number | undefined,
): Partial<OrchestratorOptions> {
  const recovery: RecoveryOptions = {
    ...defaults,
    ...(redispatchAfterMs === undefined ? {} : { redispatchAfterMs }),
  };
  if (local === undefined) return recovery;
  const after = recovery.redispatchAfterMs ?? DEFAULT_ORCHESTRATOR_OPTIONS.redispatchAfterMs;
  // Not given, the orchestrator's own default sweeps already (when it sends commands twice at all).
  if (after === 0 || recovery.recoverySweepIntervalMs !== 0) return { ...recovery, localWorkers: local };
  return {
    ...recovery,
    localWorkers: local,
    recoverySweepIntervalMs: Math.min(DEFAULT_ORCHESTRATOR_OPTIONS.recoverySweepIntervalMs, after),
  };
}
