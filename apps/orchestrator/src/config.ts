import { listVariable, parseServiceConfig, type ServiceConfig } from '@multiagents/backends';
import { booleanVariable, timerDelayVariable } from '@multiagents/core';
import { parseControlPlaneSecurity, type ControlPlaneSecurity } from '@multiagents/grpc-server';
import { parseTracingConfig, type TracingConfig } from '@multiagents/telemetry';
import { ValidationErrorList } from './config-support';

/** The orchestrator's settings: SPEC §7 plus what the embedded mode hosts. */
export interface OrchestratorConfig extends ServiceConfig {
  /**
   * Modules exporting `workers` (WorkerDefinition[]) hosted in this process: required with the
   * memory backend (the embedded mode), optional with Redis or NATS (workers usually run in
   * worker-manager replicas).
   */
  readonly workerModules: readonly string[];
  /**
   * A command for a worker hosted here with a free slot runs here at once and its result comes
   * back without the bus (MULTIAGENTS_EAGER_DISPATCH, default true): see
   * `OrchestratorOptions.localWorkers`. False sends every command through the bus.
   */
  readonly eagerDispatch: boolean;
  /** YAML/JSON definition files registered at start. */
  readonly definitionFiles: readonly string[];
  /** A result taken by an orchestrator that crashed goes to another after this long (ms). */
  readonly visibilityTimeoutMs?: number;
  /**
   * A command whose result has not come after this long is sent again (MULTIAGENTS_REDISPATCH_AFTER_MS;
   * default: the backend's, 5 minutes on Redis and 30 s on NATS); also how long a run must be
   * idle before a recovery sweep sends its commands again.
   */
  readonly redispatchAfterMs?: number;
  /**
   * Interface the gRPC API binds (GRPC_HOST): by default 127.0.0.1 while authentication is off,
   * 0.0.0.0 once it is on.
   */
  readonly grpcHost: string;
  /** Interface the HTTP health port binds (HTTP_HOST), with the same default. */
  readonly httpHost: string;
  /** TLS, authentication and reflection of the gRPC API (MULTIAGENTS_TLS_*, MULTIAGENTS_AUTH_*, GRPC_REFLECTION). */
  readonly security: ControlPlaneSecurity;
  /** Largest gRPC message in or out (GRPC_MAX_MESSAGE_BYTES); larger requests get RESOURCE_EXHAUSTED. */
  readonly grpcMaxMessageBytes: number;
  /**
   * OpenTelemetry tracing from the standard `OTEL_*` variables (OTEL_EXPORTER_OTLP_ENDPOINT,
   * OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, …); undefined (off) when no endpoint is set.
   */
  readonly tracing?: TracingConfig;
}

/** Default of GRPC_MAX_MESSAGE_BYTES: gRPC's own default, 4 MiB. */
export const DEFAULT_GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Largest GRPC_MAX_MESSAGE_BYTES accepted (1 GiB): beyond it one request could exhaust memory. */
const MAX_GRPC_MAX_MESSAGE_BYTES = 1024 * 1024 * 1024;

/** The only place the orchestrator reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): OrchestratorConfig {
  const problems = new ValidationErrorList();
  const report = (problem: string): void => problems.add(problem);
  const base = problems.collect(() => parseServiceConfig(env, { grpcPort: 50051 }));
  const workerModules = listVariable(env, 'MULTIAGENTS_WORKER_MODULES');
  const definitionFiles = listVariable(env, 'MULTIAGENTS_DEFINITIONS');
  const eagerDispatch = booleanVariable(env, 'MULTIAGENTS_EAGER_DISPATCH', true);
  if (eagerDispatch === undefined) {
    problems.add(`MULTIAGENTS_EAGER_DISPATCH=${env['MULTIAGENTS_EAGER_DISPATCH']}: must be true or false`);
  }
  if (base?.backend === 'memory' && workerModules.length === 0) {
    problems.add(
      'MULTIAGENTS_WORKER_MODULES is required with the memory backend: the embedded mode hosts the workers',
    );
  }
  const security = problems.collect(() => parseControlPlaneSecurity(env, { checkFiles: true }));
  const tracing = problems.collect(() => parseTracingConfig(env, { serviceName: 'orchestrator' }));
  const rawMaxBytes = env['GRPC_MAX_MESSAGE_BYTES'];
  let grpcMaxMessageBytes = DEFAULT_GRPC_MAX_MESSAGE_BYTES;
  if (rawMaxBytes !== undefined && rawMaxBytes !== '') {
    grpcMaxMessageBytes = Number(rawMaxBytes);
    if (
      !Number.isSafeInteger(grpcMaxMessageBytes) ||
      grpcMaxMessageBytes < 1024 ||
      grpcMaxMessageBytes > MAX_GRPC_MAX_MESSAGE_BYTES
    ) {
      problems.add(
        `GRPC_MAX_MESSAGE_BYTES=${rawMaxBytes}: must be an integer from 1024 to ${MAX_GRPC_MAX_MESSAGE_BYTES}`,
      );
    }
  }
  const visibilityTimeoutMs = timerDelayVariable(env, 'MULTIAGENTS_VISIBILITY_TIMEOUT_MS', report);
  const redispatchAfterMs = timerDelayVariable(env, 'MULTIAGENTS_REDISPATCH_AFTER_MS', report);
  problems.throwIfAny('invalid orchestrator configuration');
  return {
    ...(base as ServiceConfig),
    workerModules,
    eagerDispatch: eagerDispatch ?? true,
    definitionFiles,
    grpcHost: (security as ControlPlaneSecurity).grpcHost,
    httpHost: (security as ControlPlaneSecurity).httpHost,
    security: security as ControlPlaneSecurity,
    grpcMaxMessageBytes,
    ...(visibilityTimeoutMs === undefined ? {} : { visibilityTimeoutMs }),
    ...(redispatchAfterMs === undefined ? {} : { redispatchAfterMs }),
    ...(tracing === undefined ? {} : { tracing }),
  };
}
