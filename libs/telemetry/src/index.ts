export { createPinoLogger, LogFormat, REDACTED_PATHS } from './pino-logger';
export type { PinoLoggerOptions } from './pino-logger';
export { HealthServer } from './health-server';
export type { StatsSource, HttpReply, RouteHandler, FallbackHandler } from './health-server';
// Types only: the SDK behind `Tracing` loads on first use (createTracing), never when tracing is off.
export type { Tracing, TracingOptions } from './tracing/tracing';
export { createTracing } from './tracing/create-tracing';
export { parseTracingConfig, SamplerName, withoutCredentials } from './tracing/tracing-config';
export type { TracingConfig } from './tracing/tracing-config';
export {
  OrchestratorTracing,
  DEFAULT_PENDING_RUNS,
  DEFAULT_WAITING_STEPS,
} from './tracing/orchestrator-tracing';
export type { OrchestratorTracingOptions } from './tracing/orchestrator-tracing';
export { WorkerTracing } from './tracing/worker-tracing';
export type { WorkerTracingOptions } from './tracing/worker-tracing';
export { Attr, SpanName } from './tracing/attributes';
export {
  isSampled,
  parseTraceHeaders,
  formatTraceHeaders,
  contextFromHeaders,
} from './tracing/trace-context';
