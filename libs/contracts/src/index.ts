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
  hasErrorCode,
  toErrorInfo,
} from './errors';
export type { ErrorInfo, MultiAgentsErrorOptions } from './errors';
export { EventType, isEventType, LIFECYCLE_EVENT_TYPES } from './event-types';
export { Topics, Groups } from './envelope';
export type { Envelope } from './envelope';
export type {
  StepCommandPayload,
  StepResultPayload,
  StepHeartbeatPayload,
  WorkerHeartbeatPayload,
} from './payloads';
export { StepKind, WORKER_NAME_PATTERN, MAX_WORKER_NAME_LENGTH } from './definition';
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
export { RunState, StepStatus, TERMINAL_RUN_STATES, isTerminalRunState } from './run';
export type { Run, StepRecord, AttemptRecord, CompensationRecord } from './run';
export { encodeEnvelope, decodeEnvelope, MAX_ENVELOPE_BYTES, SIGNATURE_HEADER } from './envelope-codec';
export type { EnvelopeCodecOptions, EnvelopeRejection } from './envelope-codec';
export { definitionToProto, definitionFromProto } from './definition-proto';
