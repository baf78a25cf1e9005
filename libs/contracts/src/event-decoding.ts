import type { Envelope } from './envelope';
import { PoisonMessageError } from './errors';
import { LIFECYCLE_EVENT_TYPES } from './event-types';
import type { TransitionEventPayload, WorkerHeartbeatPayload } from './payloads';
import { RunState } from './run';

/**
 * Why a consumer of the events (metrics-collector, event-monitor) refused one: the dead letter's
 * reason and the label or key its counters use.
 */
export const EventRejectReason = {
  /** A `workflow.transitioned` payload without a version, a known state or an events list. */
  BadTransition: 'bad_transition',
  /** One of its lifecycle events has an unknown type or state, or a malformed field. */
  BadLifecycleEvent: 'bad_lifecycle_event',
  /** A `worker.heartbeat` payload of the wrong shape. */
  BadHeartbeat: 'bad_heartbeat',
  /** An envelope without a run id where one is needed. */
  MissingRun: 'missing_run',
} as const;
/** One of {@link EventRejectReason}'s values. */
export type EventRejectReason = (typeof EventRejectReason)[keyof typeof EventRejectReason];

/** Most lifecycle events one transition may carry (an engine transition emits a handful). */
export const MAX_EVENTS_PER_TRANSITION = 10_000;

const RUN_STATES: ReadonlySet<string> = new Set(Object.values(RunState));
const LIFECYCLE_TYPES: ReadonlySet<string> = new Set(LIFECYCLE_EVENT_TYPES);

/** The reason a {@link PoisonMessageError} thrown by this module carries, if any. */
export function eventRejectReasonOf(err: unknown): EventRejectReason | undefined {
  if (!(err instanceof PoisonMessageError)) return undefined;
  const reason = err.details?.['reason'];
  return Object.values(EventRejectReason).includes(reason as EventRejectReason)
    ? (reason as EventRejectReason)
    : undefined;
}

function reject(reason: EventRejectReason, envelope: Envelope, problem: string): never {
  throw new PoisonMessageError(`${reason}: ${envelope.type} ${envelope.id}: ${problem}`, {
    details: { reason, envelopeId: envelope.id },
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The payload of a `workflow.transitioned` envelope, checked field by field (the bus guarantees
 * only an envelope): throws a {@link PoisonMessageError} with a {@link EventRejectReason}, so the bus
 * dead-letters it at once with that reason and the events behind it go on.
 */
export function decodeTransition(envelope: Envelope): TransitionEventPayload {
  if (typeof envelope.txId !== 'string' || envelope.txId.length === 0) {
    return reject(EventRejectReason.MissingRun, envelope, 'txId is empty');
  }
  const payload = envelope.payload;
  if (!isRecord(payload))
    return reject(EventRejectReason.BadTransition, envelope, 'payload is not an object');
  if (!isCount(payload['version']) || payload['version'] < 1) {
    return reject(EventRejectReason.BadTransition, envelope, 'version must be a positive integer');
  }
  if (typeof payload['state'] !== 'string' || !RUN_STATES.has(payload['state'])) {
    return reject(EventRejectReason.BadTransition, envelope, 'state is not a run state');
  }
  const events = payload['events'];
  if (!Array.isArray(events) || events.length > MAX_EVENTS_PER_TRANSITION) {
    return reject(EventRejectReason.BadTransition, envelope, 'events must be a list');
  }
  events.forEach((event: unknown, i) => {
    const problem = lifecycleEventProblem(event);
    if (problem !== undefined)
      reject(EventRejectReason.BadLifecycleEvent, envelope, `events[${i}]: ${problem}`);
  });
  return payload as unknown as TransitionEventPayload;
}

function lifecycleEventProblem(event: unknown): string | undefined {
  if (!isRecord(event)) return 'not an object';
  if (typeof event['type'] !== 'string' || !LIFECYCLE_TYPES.has(event['type'])) return 'unknown type';
  if (typeof event['state'] !== 'string' || !RUN_STATES.has(event['state'])) return 'unknown state';
  if (event['step'] !== undefined && typeof event['step'] !== 'string') return 'step is not a string';
  if (event['attempt'] !== undefined && !isCount(event['attempt'])) return 'attempt is not a count';
  const duration = event['durationMs'];
  if (
    duration !== undefined &&
    !(typeof duration === 'number' && Number.isFinite(duration) && duration >= 0)
  ) {
    return 'durationMs is not a duration';
  }
  return undefined;
}

/** The payload of a `worker.heartbeat` envelope, checked; throws like {@link decodeTransition}. */
export function decodeHeartbeat(envelope: Envelope): WorkerHeartbeatPayload {
  const payload = envelope.payload;
  if (
    !isRecord(payload) ||
    typeof payload['managerId'] !== 'string' ||
    payload['managerId'].length === 0 ||
    !Array.isArray(payload['workers']) ||
    !payload['workers'].every((w) => typeof w === 'string') ||
    !isCount(payload['inFlight']) ||
    // Optional: worker-managers older than the field send none.
    (payload['lingering'] !== undefined && !isCount(payload['lingering']))
  ) {
    return reject(
      EventRejectReason.BadHeartbeat,
      envelope,
      'expected { managerId, workers[], inFlight } and, when present, a lingering count',
    );
  }
  return payload as unknown as WorkerHeartbeatPayload;
}
