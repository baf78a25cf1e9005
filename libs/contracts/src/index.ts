export {
  ErrorCode,
  MultiAgentsError,
  NonRetryableError,
  ValidationError,
  RunNotFoundError,
  DefinitionNotFoundError,
  AlreadyExistsError,
  FailedPreconditionError,
  ResourceExhaustedError,
  IllegalTransitionError,
  PoisonMessageError,
  PayloadRejectedError,
  UnauthenticatedError,
  PermissionDeniedError,
  hasErrorCode,
  isTooLargeError,
  toErrorInfo,
} from './errors';
export type { ErrorInfo, MultiAgentsErrorOptions } from './errors';
export { EventType, isEventType, LIFECYCLE_EVENT_TYPES } from './event-types';
/** Checked decoding of `workflow.transitioned` and `worker.heartbeat` payloads for event consumers. */
export {
  decodeTransition,
  decodeHeartbeat,
  EventRejectReason,
  eventRejectReasonOf,
  MAX_EVENTS_PER_TRANSITION,
} from './event-decoding';
export { Topics, Groups } from './envelope';
export type { Envelope } from './envelope';
export type {
  StepCommandPayload,
  StepResultPayload,
  StepHeartbeatPayload,
  StepCancelPayload,
  StepProgressPayload,
  WorkerHeartbeatPayload,
  LifecycleEvent,
  TransitionEventPayload,
} from './payloads';
export {
  StepKind,
  WORKER_NAME_PATTERN,
  MAX_WORKER_NAME_LENGTH,
  RESERVED_NAMES,
  SIGNAL_NAME_PATTERN,
  isReservedName,
} from './definition';
export type {
  RetryPolicy,
  InputMapping,
  TaskStep,
  ParallelStep,
  WaitStep,
  SleepStep,
  StepDefinition,
  WorkflowDefaults,
  WorkflowDefinition,
} from './definition';
export { RunState, StepStatus, TERMINAL_RUN_STATES, isTerminalRunState, rebuildContext } from './run';
export type { Run, StepRecord, AttemptRecord, CompensationRecord, RunUsage } from './run';
export {
  encodeEnvelope,
  decodeEnvelope,
  describeEnvelopeRefusal,
  EnvelopeRejection,
  MAX_ENVELOPE_BYTES,
  SIGNATURE_HEADER,
} from './envelope-codec';
export type { EnvelopeCodecOptions } from './envelope-codec';
export { definitionToProto, definitionFromProto } from './definition-proto';
export { costUsd, costForModel, checkBudget, validateBudget, validatePriceTable } from './budget';
export type { Budget, BudgetCheck, ModelPrice, PriceTable, Spend, TokenCounts } from './budget';
/** JSON values encrypted at rest (AES-256-GCM under a key ring), bound to where they belong. */
export { sealJson, openJson, isSealedJson, sealedKeyId } from './sealed-json';
/** Random bytes for AES-GCM nonces, drawn from the system's generator in batches. */
export { randomNonce } from './random-nonce';
/** What {@link sealJson} returns. */
export type { SealedJson } from './sealed-json';
export { KEY_ID_PATTERN, DEFAULT_MIN_KEY_BYTES, createKeyRing, parseKeyRing } from './key-ring';
export type { KeyRing, KeyRingOptions } from './key-ring';
export {
  checkJsonBounds,
  parseBoundedJson,
  DEFAULT_JSON_BOUNDS,
  DEFAULT_MAX_JSON_BYTES,
  DEFAULT_MAX_JSON_DEPTH,
} from './json-bounds';
export type { JsonBounds } from './json-bounds';
export { copyJsonData } from './json-copy';
export { mergedCopy, shallowCopy } from './shallow-copy';
export { MAX_DRAIN_TIMEOUT_MS, MAX_TIMER_MS, isTimerDelayMs } from './timer-delay';
