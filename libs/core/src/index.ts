export { systemClock } from './ports/clock';
export type { Clock } from './ports/clock';
export { uuidGenerator } from './ports/id-generator';
export type { IdGenerator } from './ports/id-generator';
export { silentLogger } from './ports/logger';
export type { Logger, LogFields } from './ports/logger';
export { DEFAULT_SUBSCRIBE_OPTIONS } from './ports/event-bus';
export type {
  EventBus,
  Delivery,
  DeliveryHandler,
  SubscribeOptions,
  Subscription,
  DeadLetter,
} from './ports/event-bus';
export type { Effect, Timer, TimerPayload } from './ports/effects';
export type {
  StateStore,
  TimerStore,
  DefinitionStore,
  DefinitionSummary,
  StoredRun,
  OutboxEntry,
  CreateRunResult,
  RunFilter,
  RunPage,
  PendingOutbox,
} from './ports/state-store';
export { CelCompiler, DEFAULT_CEL_LIMITS, celToJson } from './definition/cel-expression';
export type { CelLimits, CelProgram, CelActivation } from './definition/cel-expression';
export {
  validateDefinition,
  compileWorkflow,
  taskSteps,
  DEFAULT_MAX_STEPS,
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
  timerIdFor,
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
export { parseServiceConfig, listVariable, Backend } from './config/service-config';
export type { ServiceConfig, Environment } from './config/service-config';
export { MinHeap } from './util/min-heap';
export { resolveSubscribeOptions } from './ports/resolve-subscribe-options';
export type { ResolvedSubscribeOptions } from './ports/resolve-subscribe-options';
