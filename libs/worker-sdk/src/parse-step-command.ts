import {
  EventType,
  PoisonMessageError,
  type Envelope,
  type StepCommandPayload,
} from '@multiagents/contracts';
import { describeValue } from './describe-value';

/** A `step.command` envelope whose every field has been checked. */
export interface StepCommand {
  /** The envelope's id (not the command id: that is `payload.commandId`). */
  readonly id: string;
  readonly txId: string;
  readonly workflowId: string;
  readonly step: string;
  readonly attempt: number;
  /** Copied onto the result and heartbeats, so the trace context flows back to the orchestrator. */
  readonly headers: Readonly<Record<string, string>>;
  readonly payload: StepCommandPayload;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nonEmptyString(value: unknown, label: string, problems: string[]): void {
  if (typeof value !== 'string' || value.length === 0) {
    problems.push(`${label} must be a non-empty string (got ${describeValue(value)})`);
  }
}

/** Optional durations: absent, null (JSON) or 0 (a protobuf scalar's default) all mean "not set". */
function optionalDuration(value: unknown, label: string, problems: string[]): number | undefined {
  if (value === undefined || value === null || value === 0) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    problems.push(`${label} must be a non-negative number (got ${describeValue(value)})`);
    return undefined;
  }
  return value;
}

/**
 * Checks that an envelope is a well-formed `step.command`. Throws PoisonMessageError listing every
 * problem otherwise: redelivering such a message can never succeed, so the bus dead-letters it
 * at once and the consumer goes on with the next one.
 */
export function parseStepCommand(envelope: Envelope): StepCommand {
  const problems: string[] = [];
  const raw = envelope as unknown as Record<string, unknown>;
  if (raw.type !== EventType.StepCommand)
    problems.push(`type must be "${EventType.StepCommand}" (got ${describeValue(raw.type)})`);
  nonEmptyString(raw.txId, 'txId', problems);
  if (typeof raw.workflowId !== 'string')
    problems.push(`workflowId must be a string (got ${describeValue(raw.workflowId)})`);
  nonEmptyString(raw.step, 'step', problems);
  if (typeof raw.attempt !== 'number' || !Number.isSafeInteger(raw.attempt) || raw.attempt < 0) {
    problems.push(`attempt must be a non-negative integer (got ${describeValue(raw.attempt)})`);
  }

  const headers: Record<string, string> = {};
  if (raw.headers !== undefined && raw.headers !== null) {
    if (!isRecord(raw.headers)) {
      problems.push(`headers must be an object (got ${describeValue(raw.headers)})`);
    } else {
      for (const [key, value] of Object.entries(raw.headers)) {
        if (typeof value === 'string') headers[key] = value;
        else problems.push(`headers.${key} must be a string (got ${describeValue(value)})`);
      }
    }
  }

  const payload = raw.payload;
  let timeoutMs: number | undefined;
  let heartbeatTimeoutMs: number | undefined;
  let scheduleToStartTimeoutMs: number | undefined;
  if (!isRecord(payload)) {
    problems.push(`payload must be an object (got ${describeValue(payload)})`);
  } else {
    nonEmptyString(payload.commandId, 'payload.commandId', problems);
    nonEmptyString(payload.worker, 'payload.worker', problems);
    nonEmptyString(payload.idempotencyKey, 'payload.idempotencyKey', problems);
    if (typeof payload.compensation !== 'boolean') {
      problems.push(`payload.compensation must be a boolean (got ${describeValue(payload.compensation)})`);
    }
    timeoutMs = optionalDuration(payload.timeoutMs, 'payload.timeoutMs', problems);
    heartbeatTimeoutMs = optionalDuration(payload.heartbeatTimeoutMs, 'payload.heartbeatTimeoutMs', problems);
    scheduleToStartTimeoutMs = optionalDuration(
      payload.scheduleToStartTimeoutMs,
      'payload.scheduleToStartTimeoutMs',
      problems,
    );
  }

  if (problems.length > 0 || !isRecord(payload)) {
    throw new PoisonMessageError(`malformed step.command ${describeValue(raw.id)}: ${problems.join('; ')}`, {
      details: { envelopeId: typeof raw.id === 'string' ? raw.id : null, problems },
    });
  }

  return {
    id: String(raw.id),
    txId: raw.txId as string,
    workflowId: raw.workflowId as string,
    step: raw.step as string,
    attempt: raw.attempt as number,
    headers,
    payload: {
      commandId: payload.commandId as string,
      worker: payload.worker as string,
      // Any JSON value (or nothing) is a valid input: the worker validates its own input.
      input: payload.input,
      idempotencyKey: payload.idempotencyKey as string,
      compensation: payload.compensation as boolean,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs }),
      ...(scheduleToStartTimeoutMs === undefined ? {} : { scheduleToStartTimeoutMs }),
    },
  };
}
