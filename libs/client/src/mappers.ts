/**
 * The client's side of the edge: proto messages ↔ domain types (libs/contracts). One function per
 * direction; callers of the client only ever see domain types.
 */
import {
  ErrorCode,
  MultiAgentsError,
  RunState,
  StepStatus,
  type AttemptRecord,
  type CompensationRecord,
  type ErrorInfo,
  type Run,
  type StepRecord,
} from '@multiagents/contracts';
import * as pb from '@multiagents/proto';
import type {
  CircuitStateName,
  MonitoredWorkerManagerView,
  WorkerStatus,
  WorkflowDefinitionSummary,
} from './client-types';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const RUN_STATE_FROM_PROTO: Readonly<Record<number, RunState>> = {
  [pb.RunState.PENDING]: RunState.Pending,
  [pb.RunState.RUNNING]: RunState.Running,
  [pb.RunState.WAITING]: RunState.Waiting,
  [pb.RunState.COMPLETED]: RunState.Completed,
  [pb.RunState.FAILED]: RunState.Failed,
  [pb.RunState.COMPENSATING]: RunState.Compensating,
  [pb.RunState.COMPENSATED]: RunState.Compensated,
  [pb.RunState.COMPENSATION_FAILED]: RunState.CompensationFailed,
  [pb.RunState.CANCELLING]: RunState.Cancelling,
  [pb.RunState.CANCELLED]: RunState.Cancelled,
};

const RUN_STATE_TO_PROTO = new Map<RunState, pb.RunState>(
  Object.entries(RUN_STATE_FROM_PROTO).map(([proto, domain]) => [domain, Number(proto) as pb.RunState]),
);

const STEP_STATUS_FROM_PROTO: Readonly<Record<number, StepStatus>> = {
  [pb.StepStatus.PENDING]: StepStatus.Pending,
  [pb.StepStatus.RUNNING]: StepStatus.Running,
  [pb.StepStatus.RETRYING]: StepStatus.Retrying,
  [pb.StepStatus.WAITING]: StepStatus.Waiting,
  [pb.StepStatus.COMPLETED]: StepStatus.Completed,
  [pb.StepStatus.SKIPPED]: StepStatus.Skipped,
  [pb.StepStatus.FAILED]: StepStatus.Failed,
  [pb.StepStatus.CANCELLED]: StepStatus.Cancelled,
  [pb.StepStatus.COMPENSATING]: StepStatus.Compensating,
  [pb.StepStatus.COMPENSATED]: StepStatus.Compensated,
  [pb.StepStatus.COMPENSATION_FAILED]: StepStatus.CompensationFailed,
};

const OUTCOME_FROM_PROTO: Readonly<Record<number, NonNullable<AttemptRecord['outcome']>>> = {
  [pb.AttemptOutcome.COMPLETED]: 'completed',
  [pb.AttemptOutcome.FAILED]: 'failed',
  [pb.AttemptOutcome.TIMED_OUT]: 'timed_out',
};

const COMPENSATION_FROM_PROTO: Readonly<Record<number, CompensationRecord['status']>> = {
  [pb.CompensationStatus.RUNNING]: 'running',
  [pb.CompensationStatus.RETRYING]: 'retrying',
  [pb.CompensationStatus.COMPLETED]: 'completed',
  [pb.CompensationStatus.FAILED]: 'failed',
  [pb.CompensationStatus.SKIPPED]: 'skipped',
};

const CIRCUIT_FROM_PROTO: Readonly<Record<number, CircuitStateName>> = {
  [pb.CircuitState.CLOSED]: 'closed',
  [pb.CircuitState.OPEN]: 'open',
  [pb.CircuitState.HALF_OPEN]: 'half-open',
  [pb.CircuitState.ISOLATED]: 'isolated',
  [pb.CircuitState.DISABLED]: 'disabled',
};

/** A value the server sent that this client cannot read (a newer server, or a bug). */
function unreadable(what: string): MultiAgentsError {
  return new MultiAgentsError(ErrorCode.Internal, `unreadable answer from the server: ${what}`, {
    retryable: false,
  });
}

function known<T>(table: Readonly<Record<number, T>>, value: number, what: string): T {
  const found = table[value];
  if (found === undefined) throw unreadable(`${what} ${value}`);
  return found;
}

/** The proto enum of a domain run state (for filters). */
export function runStateToProto(state: RunState): pb.RunState {
  const proto = RUN_STATE_TO_PROTO.get(state);
  if (proto === undefined) {
    throw new MultiAgentsError(ErrorCode.InvalidArgument, `unknown run state ${String(state)}`, {
      retryable: false,
    });
  }
  return proto;
}

/** The domain run state of a proto enum value (throws INTERNAL for a value this client does not know). */
export function runStateFromProto(state: number): RunState {
  return known(RUN_STATE_FROM_PROTO, state, 'run state');
}

/** JSON value → UTF-8 bytes; undefined → empty bytes ("absent"). */
export function jsonToBytes(value: unknown): Buffer {
  return value === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(value), 'utf8');
}

/** UTF-8 JSON bytes → value; empty bytes → undefined. */
export function jsonFromBytes(bytes: Uint8Array, what: string): unknown {
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw unreadable(`${what} is not JSON`);
  }
}

function objectFromBytes(bytes: Uint8Array, what: string): Record<string, unknown> {
  const value = jsonFromBytes(bytes, what) ?? {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw unreadable(`${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Copies the fields that are set, so optional domain fields are absent rather than undefined. */
function defined<T extends object>(value: T): T {
  const out: Partial<Mutable<T>> = {};
  for (const [key, field] of Object.entries(value) as [keyof T, T[keyof T]][]) {
    if (field !== undefined) out[key] = field;
  }
  return out as T;
}

function errorInfoFromProto(error: pb.ErrorInfo | undefined): ErrorInfo | undefined {
  if (error === undefined) return undefined;
  const details = jsonFromBytes(error.details, 'error details');
  return defined<ErrorInfo>({
    code: error.code,
    message: error.message,
    retryable: error.retryable,
    details: details as Record<string, unknown> | undefined,
    partialEffects: error.partialEffects,
  });
}

function attemptFromProto(attempt: pb.AttemptRecord): AttemptRecord {
  return defined<AttemptRecord>({
    attempt: attempt.attempt,
    startedAt: attempt.startedAtMs,
    endedAt: attempt.endedAtMs,
    pickedUpAt: attempt.pickedUpAtMs,
    outcome:
      attempt.outcome === pb.AttemptOutcome.UNSPECIFIED
        ? undefined
        : known(OUTCOME_FROM_PROTO, attempt.outcome, 'attempt outcome'),
    error: errorInfoFromProto(attempt.error),
  });
}

function compensationFromProto(record: pb.CompensationRecord | undefined): CompensationRecord | undefined {
  if (record === undefined) return undefined;
  return defined<CompensationRecord>({
    status: known(COMPENSATION_FROM_PROTO, record.status, 'compensation status'),
    attempt: record.attempt,
    attempts: record.attempts.map(attemptFromProto),
    startedAt: record.startedAtMs,
    endedAt: record.endedAtMs,
    error: errorInfoFromProto(record.error),
    attemptBase: record.attemptBase,
  });
}

function stepRecordFromProto(step: pb.StepRecord): StepRecord {
  return defined<StepRecord>({
    name: step.name,
    status: known(STEP_STATUS_FROM_PROTO, step.status, 'step status'),
    attempt: step.attempt,
    attempts: step.attempts.map(attemptFromProto),
    startedAt: step.startedAtMs,
    endedAt: step.endedAtMs,
    output: jsonFromBytes(step.output, `step ${step.name} output`),
    error: errorInfoFromProto(step.error),
    completedSeq: step.completedSeq,
    heartbeatAt: step.heartbeatAtMs,
    attemptBase: step.attemptBase,
    outputSeq: step.outputSeq,
    outputKey: step.outputKey,
    partialEffects: step.partialEffects,
    compensation: compensationFromProto(step.compensation),
  });
}

/**
 * The domain keeps `compensationQueue` absent until unwinding begins and `[]` once it is done;
 * protobuf's repeated field cannot tell the two apart. Unwinding begins by starting the head's
 * compensation, so "a step has a compensation record" is exactly "unwinding began".
 */
function compensationQueueFromProto(
  run: pb.RunRecord,
  steps: Record<string, StepRecord>,
): string[] | undefined {
  if (run.compensationQueue.length > 0) return [...run.compensationQueue];
  return Object.values(steps).some((step) => step.compensation !== undefined) ? [] : undefined;
}

/** The RunRecord message → a domain run. */
export function runFromProto(run: pb.RunRecord): Run {
  const steps: Record<string, StepRecord> = {};
  for (const [name, step] of Object.entries(run.steps)) steps[name] = stepRecordFromProto(step);
  const signals: Record<string, unknown[]> = {};
  for (const [name, pending] of Object.entries(run.signals)) {
    signals[name] = pending.payloads.map((payload) => jsonFromBytes(payload, `signal ${name}`) ?? null);
  }
  return defined<Run>({
    txId: run.txId,
    workflowId: run.workflowId,
    workflowVersion: run.workflowVersion,
    state: known(RUN_STATE_FROM_PROTO, run.state, 'run state'),
    input: objectFromBytes(run.input, 'run input'),
    context: objectFromBytes(run.context, 'run context'),
    steps,
    createdAt: run.createdAtMs,
    updatedAt: run.updatedAtMs,
    startedAt: run.startedAtMs,
    endedAt: run.endedAtMs,
    idempotencyKey: run.idempotencyKey,
    signals,
    completedCount: run.completedCount,
    outputCount: run.outputCount,
    compensationQueue: compensationQueueFromProto(run, steps),
    error: errorInfoFromProto(run.error),
    cancelRequested: run.cancelRequested,
    traceHeaders: Object.keys(run.traceHeaders).length > 0 ? { ...run.traceHeaders } : undefined,
    usage: run.usage === undefined ? undefined : { ...run.usage },
  });
}

// ---- definitions -----------------------------------------------------------------------------

export { definitionFromProto, definitionToProto } from '@multiagents/contracts';

/** The WorkflowDefinitionSummary message → the client's summary. */
export function definitionSummaryFromProto(summary: pb.WorkflowDefinitionSummary): WorkflowDefinitionSummary {
  return defined<WorkflowDefinitionSummary>({
    id: summary.id,
    latestVersion: summary.latestVersion,
    versions: [...summary.versions],
    description: summary.description,
  });
}

/** The WorkerInfo message → the client's worker status (an older server's reads lingering 0). */
export function workerStatusFromProto(worker: pb.WorkerInfo): WorkerStatus {
  return {
    name: worker.name,
    inFlight: worker.inFlight,
    capacity: worker.capacity,
    circuit: CIRCUIT_FROM_PROTO[worker.circuit] ?? 'unknown',
    lingering: worker.lingering,
  };
}

/** The MonitoredWorkerManager message → the client's view (an older monitor's reads lingering 0). */
export function monitoredWorkerManagerFromProto(
  manager: pb.MonitoredWorkerManager,
): MonitoredWorkerManagerView {
  return {
    managerId: manager.managerId,
    workers: [...manager.workers],
    capacity: manager.capacity,
    inFlight: manager.inFlight,
    seenAt: manager.seenAtMs,
    live: manager.live,
    details: { ...manager.details },
    lingering: manager.lingering,
  };
}
