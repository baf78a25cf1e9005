export { defineWorker, WORKER_NAME_PATTERN } from './define-worker';
export type { WorkerDefinition, WorkerHandler } from './define-worker';
export type { WorkerContext } from './worker-context';
export { DEFAULT_WORKER_OPTIONS } from './worker-options';
export type { WorkerOptions, ResolvedWorkerOptions, CircuitBreakerOptions } from './worker-options';
export { WorkerManager, DEFAULT_WORKER_MANAGER_OPTIONS, LOCAL_DISPATCH_SLICE_MS } from './worker-manager';
export type {
  WorkerManagerOptions,
  WorkerSubscribeOptions,
  WorkerInfo,
  CloseOptions,
} from './worker-manager';
export { WorkerRunner, DEFAULT_HEARTBEAT_THROTTLE_MS } from './worker-runner';
export type {
  AttemptOutcome,
  CircuitStateName,
  HeartbeatSink,
  RunAttemptOptions,
  WorkerRunnerOptions,
} from './worker-runner';
export { DEFAULT_PROGRESS_MAX_PER_SECOND, MAX_PENDING_PROGRESS_CHARS } from './progress-throttle';
export type { ProgressUpdate, ProgressReport, ProgressSink } from './progress-throttle';
export { parseStepCommand } from './parse-step-command';
export type { StepCommand } from './parse-step-command';
export { loadWorkerModules } from './load-worker-modules';
export type { WorkerServices, WorkerModule } from './load-worker-modules';
export { DEFAULT_OUTPUT_BOUNDS } from './to-json-value';
