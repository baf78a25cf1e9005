/**
 * Mappers between the gRPC messages (libs/proto) and the domain types (libs/contracts), used by
 * the server handlers only: proto types never travel past this edge. One function per direction.
 *
 * Definitions from callers are mapped to plain objects *without* judging them: the orchestrator's
 * validator sees exactly what was sent (a step without a kind, a version of 0) and reports every
 * problem at once, so a definition registered over gRPC is checked like one read from YAML.
 */
import {
  MultiAgentsError,
  ResourceExhaustedError,
  RunState,
  StepStatus,
  ValidationError,
  parseBoundedJson,
  type JsonBounds,
  type AttemptRecord,
  type CompensationRecord,
  type ErrorInfo,
  type Run,
  type StepRecord,
} from '@multiagents/contracts';
import type { DefinitionSummary, WorkerManagerRecord } from '@multiagents/core';
import * as pb from '@multiagents/proto';
import type { WorkerInfo } from '@multiagents/worker-sdk';

/** Domain run state → proto enum. */
const RUN_STATE_TO_PROTO: Record<RunState, pb.RunState> = {
  [RunState.Pending]: pb.RunState.PENDING,
  [RunState.Running]: pb.RunState.RUNNING,
  [RunState.Waiting]: pb.RunState.WAITING,
  [RunState.Completed]: pb.RunState.COMPLETED,
  [RunState.Failed]: pb.RunState.FAILED,
  [RunState.Compensating]: pb.RunState.COMPENSATING,
  [RunState.Compensated]: pb.RunState.COMPENSATED,
  [RunState.CompensationFailed]: pb.RunState.COMPENSATION_FAILED,
  [RunState.Cancelling]: pb.RunState.CANCELLING,
  [RunState.Cancelled]: pb.RunState.CANCELLED,
};

const RUN_STATE_FROM_PROTO = new Map<number, RunState>(
  Object.entries(RUN_STATE_TO_PROTO).map(([domain, proto]) => [proto, domain as RunState]),
);

const STEP_STATUS_TO_PROTO: Record<StepStatus, pb.StepStatus> = {
  [StepStatus.Pending]: pb.StepStatus.PENDING,
  [StepStatus.Running]: pb.StepStatus.RUNNING,
  [StepStatus.Retrying]: pb.StepStatus.RETRYING,
  [StepStatus.Waiting]: pb.StepStatus.WAITING,
  [StepStatus.Completed]: pb.StepStatus.COMPLETED,
  [StepStatus.Skipped]: pb.StepStatus.SKIPPED,
  [StepStatus.Failed]: pb.StepStatus.FAILED,
  [StepStatus.Cancelled]: pb.StepStatus.CANCELLED,
  [StepStatus.Compensating]: pb.StepStatus.COMPENSATING,
  [StepStatus.Compensated]: pb.StepStatus.COMPENSATED,
  [StepStatus.CompensationFailed]: pb.StepStatus.COMPENSATION_FAILED,
};

const OUTCOME_TO_PROTO: Record<NonNullable<AttemptRecord['outcome']>, pb.AttemptOutcome> = {
  completed: pb.AttemptOutcome.COMPLETED,
  failed: pb.AttemptOutcome.FAILED,
  timed_out: pb.AttemptOutcome.TIMED_OUT,
};

const COMPENSATION_TO_PROTO: Record<CompensationRecord['status'], pb.CompensationStatus> = {
  running: pb.CompensationStatus.RUNNING,
  retrying: pb.CompensationStatus.RETRYING,
  completed: pb.CompensationStatus.COMPLETED,
  failed: pb.CompensationStatus.FAILED,
  skipped: pb.CompensationStatus.SKIPPED,
};

const CIRCUIT_TO_PROTO: Record<WorkerInfo['circuit'], pb.CircuitState> = {
  closed: pb.CircuitState.CLOSED,
  open: pb.CircuitState.OPEN,
  'half-open': pb.CircuitState.HALF_OPEN,
  isolated: pb.CircuitState.ISOLATED,
  disabled: pb.CircuitState.DISABLED,
};

/** The proto enum of a domain run state. */
export function runStateToProto(state: RunState): pb.RunState {
  return RUN_STATE_TO_PROTO[state];
}

/**
 * The domain run state of a proto enum value; undefined for UNSPECIFIED. Throws ValidationError
 * for a number this server does not know (a newer client).
 */
export function runStateFromProto(state: number): RunState | undefined {
  if (state === pb.RunState.UNSPECIFIED) return undefined;
  const domain = RUN_STATE_FROM_PROTO.get(state);
  if (domain === undefined)
    throw new ValidationError('invalid request', [`state ${state} is not a RunState`]);
  return domain;
}

/** JSON value → UTF-8 bytes; undefined → empty bytes (the proto convention for "absent"). */
export function jsonToBytes(value: unknown): Buffer {
  return value === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(value), 'utf8');
}

/**
 * UTF-8 JSON bytes → value; empty bytes → `empty`. Bad JSON, or JSON nested deeper than
 * `bounds.maxDepth`, is reported as a problem of `field` (pushed into `problems`) so a request is
 * rejected with every problem at once; more than `bounds.maxBytes` throws ResourceExhaustedError at
 * once. What is accepted can be stored and encoded by every backend later.
 */
export function jsonFromBytes(
  bytes: Uint8Array,
  field: string,
  problems: string[],
  empty: unknown,
  bounds: Pick<JsonBounds, 'maxBytes' | 'maxDepth'>,
): unknown {
  if (bytes.length === 0) return empty;
  try {
    return parseBoundedJson(bytes, { ...bounds, what: field });
  } catch (err) {
    if (err instanceof ResourceExhaustedError) throw err;
    if (err instanceof ValidationError) problems.push(...err.problems);
    else if (err instanceof MultiAgentsError) problems.push(`${field}: ${err.message}`);
    else throw err;
    return undefined;
  }
}

function errorInfoToProto(error: ErrorInfo | undefined): pb.ErrorInfo | undefined {
  if (error === undefined) return undefined;
  return {
    code: error.code,
    message: error.message,
    retryable: error.retryable,
    details: jsonToBytes(error.details),
    ...(error.partialEffects === undefined ? {} : { partialEffects: error.partialEffects }),
  };
}

function attemptToProto(attempt: AttemptRecord): pb.AttemptRecord {
  return {
    attempt: attempt.attempt,
    startedAtMs: attempt.startedAt,
    endedAtMs: attempt.endedAt,
    pickedUpAtMs: attempt.pickedUpAt,
    outcome:
      attempt.outcome === undefined ? pb.AttemptOutcome.UNSPECIFIED : OUTCOME_TO_PROTO[attempt.outcome],
    error: errorInfoToProto(attempt.error),
  };
}

function compensationToProto(record: CompensationRecord | undefined): pb.CompensationRecord | undefined {
  if (record === undefined) return undefined;
  return {
    status: COMPENSATION_TO_PROTO[record.status],
    attempt: record.attempt,
    attempts: record.attempts.map(attemptToProto),
    startedAtMs: record.startedAt,
    endedAtMs: record.endedAt,
    error: errorInfoToProto(record.error),
    attemptBase: record.attemptBase,
  };
}

function stepRecordToProto(step: StepRecord): pb.StepRecord {
  return {
    name: step.name,
    status: STEP_STATUS_TO_PROTO[step.status],
    attempt: step.attempt,
    attempts: step.attempts.map(attemptToProto),
    startedAtMs: step.startedAt,
    endedAtMs: step.endedAt,
    output: jsonToBytes(step.output),
    error: errorInfoToProto(step.error),
    completedSeq: step.completedSeq,
    partialEffects: step.partialEffects,
    compensation: compensationToProto(step.compensation),
    heartbeatAtMs: step.heartbeatAt,
    attemptBase: step.attemptBase,
    outputSeq: step.outputSeq,
    outputKey: step.outputKey,
  };
}

/** A domain run → the RunRecord message (every step with attempts, outputs, errors and times). */
export function runToProto(run: Run): pb.RunRecord {
  const steps: Record<string, pb.StepRecord> = {};
  for (const [name, step] of Object.entries(run.steps)) steps[name] = stepRecordToProto(step);
  const signals: Record<string, pb.PendingSignals> = {};
  for (const [name, payloads] of Object.entries(run.signals)) {
    signals[name] = { payloads: payloads.map((payload) => jsonToBytes(payload ?? null)) };
  }
  return {
    txId: run.txId,
    workflowId: run.workflowId,
    workflowVersion: run.workflowVersion,
    state: runStateToProto(run.state),
    input: jsonToBytes(run.input),
    context: jsonToBytes(run.context),
    steps,
    createdAtMs: run.createdAt,
    updatedAtMs: run.updatedAt,
    startedAtMs: run.startedAt,
    endedAtMs: run.endedAt,
    idempotencyKey: run.idempotencyKey,
    signals,
    completedCount: run.completedCount,
    outputCount: run.outputCount,
    compensationQueue: [...(run.compensationQueue ?? [])],
    error: errorInfoToProto(run.error),
    cancelRequested: run.cancelRequested,
    traceHeaders: { ...(run.traceHeaders ?? {}) },
    usage: run.usage === undefined ? undefined : { ...run.usage },
  };
}

// ---- definitions -----------------------------------------------------------------------------

export { definitionFromProto, definitionToProto } from '@multiagents/contracts';

/** A definitions-store summary → the WorkflowDefinitionSummary message. */
export function definitionSummaryToProto(summary: DefinitionSummary): pb.WorkflowDefinitionSummary {
  return {
    id: summary.id,
    latestVersion: summary.latestVersion,
    versions: [...summary.versions],
    description: summary.description,
  };
}

/** A hosted worker's load, lingering handlers and circuit → the WorkerInfo message. */
export function workerInfoToProto(worker: WorkerInfo): pb.WorkerInfo {
  return {
    name: worker.name,
    inFlight: worker.inFlight,
    capacity: worker.capacity,
    circuit: CIRCUIT_TO_PROTO[worker.circuit] ?? pb.CircuitState.UNSPECIFIED,
    lingering: worker.lingering,
  };
}

/** A worker-manager replica as the event-monitor lists it. */
export interface MonitorWorkerManager extends WorkerManagerRecord {
  /** False once it went silent. */
  readonly live: boolean;
  /** Handlers running past their attempts at its last heartbeat; absent: unknown (sent as 0). */
  readonly lingering?: number;
}

const MAX_UINT32 = 0xffff_ffff;

/**
 * A count for a uint32 field, saturated: the protobuf writer throws on anything else, and one
 * forged `worker.heartbeat` (its counts are only checked to be safe integers) would then fail every
 * ListMonitoredWorkers until the replica is forgotten.
 */
function uint32Count(value: number): number {
  return Number.isFinite(value) ? Math.min(Math.max(Math.trunc(value), 0), MAX_UINT32) : 0;
}

/** A worker-manager replica as the monitor knows it → the MonitoredWorkerManager message. */
export function monitoredWorkerManagerToProto(manager: MonitorWorkerManager): pb.MonitoredWorkerManager {
  return {
    managerId: manager.managerId,
    workers: [...manager.workers],
    capacity: uint32Count(manager.capacity),
    inFlight: uint32Count(manager.inFlight),
    seenAtMs: manager.seenAt,
    live: manager.live,
    details: { ...(manager.details ?? {}) },
    lingering: uint32Count(manager.lingering ?? 0),
  };
}
