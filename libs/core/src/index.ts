export { systemClock } from './ports/clock';
export type { Clock } from './ports/clock';
export { uuidGenerator, txIdForIdempotencyKey } from './ports/id-generator';
export type { IdGenerator } from './ports/id-generator';
export { silentLogger } from './ports/logger';
export type { Logger, LogFields } from './ports/logger';
export { DEFAULT_SUBSCRIBE_OPTIONS } from './ports/event-bus';
export { OUTAGE_MAX_DELIVERIES, retryAfterOutage } from './ports/outage-retry';
export { DeliveryExtender } from './ports/delivery-extender';
export type {
  EventBus,
  Delivery,
  DeliveryHandler,
  SubscribeOptions,
  Subscription,
  TailHandler,
  DeadLetter,
} from './ports/event-bus';
export { timerIdFor, parseTimerId } from './ports/timer';
export type { Timer, TimerPayload } from './ports/timer';
export type {
  RunStore,
  StoredRun,
  RunRevision,
  Transition,
  CreateRunResult,
  RunFilter,
  RunPage,
} from './ports/run-store';
export type { DefinitionStore, DefinitionSummary } from './ports/definition-store';
export { MemoRecordCorruptError, decodeMemoRecord, encodeMemoRecord } from './ports/memo-store';
export type { MemoStore } from './ports/memo-store';
export type { LocalWorkers, LocalSlot, LocalResultSink } from './ports/local-workers';
export type {
  WorkerRegistry,
  WorkerManagerRecord,
  TimelineStore,
  TimelineEntry,
  TimelineReadOptions,
  GroupStats,
  TopicStats,
  RunCounts,
} from './ports/monitoring';
export { combineObservers } from './ports/observers';
export type {
  OrchestratorObserver,
  WorkerObserver,
  AttemptScope,
  AttemptResult,
  ObservedCommand,
  AttemptInfo,
  CommittedTransition,
  TransitionCause,
  TraceHeaders,
} from './ports/observers';
export {
  encodeRunRecord,
  encodeRunMeta,
  encodeRunHeader,
  encodeStepRecord,
  encodeTransitionParts,
  decodeRunRecord,
} from './store/run-record';
export type { RunRecordParts } from './store/run-record';
export { canonicalJson } from './store/canonical-json';
export { decodeListCursor, encodeListCursor } from './store/list-cursor';
export { CelCompiler, DEFAULT_CEL_LIMITS, celToJson } from './definition/cel-expression';
export type { CelLimits, CelProgram, CelActivation } from './definition/cel-expression';
export {
  validateDefinition,
  compileWorkflow,
  taskSteps,
  DEFAULT_MAX_STEPS,
  DEFINITION_LIMITS,
} from './definition/validate-definition';
export type {
  ValidateDefinitionOptions,
  CompiledWorkflow,
  CompiledStep,
  CompiledInput,
} from './definition/validate-definition';
export { WorkflowBuilder, StepListBuilder } from './definition/workflow-builder';
export type { TaskOptions, WaitOptions, StepOptions } from './definition/workflow-builder';
export { parseDefinition, MAX_DEFINITION_BYTES } from './definition/parse-definition';
export {
  createRun,
  decide,
  commandIdFor,
  idempotencyKeyFor,
  inFlightCommands,
  isOperatorEvent,
  MAX_BUFFERED_SIGNALS,
} from './engine/saga-engine';
export type {
  EngineEvent,
  OperatorEvent,
  Decision,
  AttemptOutcome,
  CreateRunParams,
} from './engine/saga-engine';
export {
  DEFAULT_RETRY_POLICY,
  DEFAULT_COMPENSATION_RETRY_POLICY,
  resolveRetryPolicy,
  backoffDelayMs,
} from './engine/retry-policy';
export type { ResolvedRetryPolicy } from './engine/retry-policy';
export {
  canTransition,
  assertTransition,
  canOperatorTransition,
  assertOperatorTransition,
} from './engine/run-transitions';
export { Orchestrator, DEFAULT_ORCHESTRATOR_OPTIONS } from './orchestrator/orchestrator';
export type {
  OrchestratorOptions,
  StartWorkflowOptions,
  StartWorkflowResult,
  OrchestratorStats,
} from './orchestrator/orchestrator';
export { LruMap } from './util/lru-map';
export { TurnSharedReads } from './util/turn-shared-reads';
export { EventLoopSlice } from './util/event-loop-slice';
export { MinHeap } from './util/min-heap';
export { deepFreeze } from './util/deep-freeze';
export type { Environment } from './config/environment';
export { booleanVariable, positiveIntegerVariable, timerDelayVariable } from './config/environment';
export { resolveSubscribeOptions } from './ports/resolve-subscribe-options';
export { handToTail } from './ports/hand-to-tail';
export type { ResolvedSubscribeOptions } from './ports/resolve-subscribe-options';
export { isEncodedPayload } from './ports/payload-codec';
export type { PayloadCodec, EncodedPayload } from './ports/payload-codec';
