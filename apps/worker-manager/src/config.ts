import { positiveIntegerVariable, timerDelayVariable } from '@multiagents/core';
import { ValidationError } from '@multiagents/contracts';
import { listVariable, parseServiceConfig, type ServiceConfig } from '@multiagents/backends';
import { parseControlPlaneSecurity, type ControlPlaneSecurity } from '@multiagents/grpc-server';
import { parseTracingConfig, type TracingConfig } from '@multiagents/telemetry';

/** The worker-manager's settings: SPEC §7 plus the worker modules it hosts and delivery tuning. */
export interface WorkerManagerConfig extends ServiceConfig {
  /** Modules exporting `workers` (WorkerDefinition[]). */
  readonly workerModules: readonly string[];
  /** An unacknowledged command goes to another replica after this long. */
  readonly visibilityTimeoutMs?: number;
  /** Deliveries of a failing command before it is dead-lettered. */
  readonly maxDeliveries?: number;
  /** How long SIGTERM (or a Drain call without a timeout) waits for commands in flight. */
  readonly drainTimeoutMs?: number;
  /**
   * Interface the gRPC API (WorkerManagerService, health, reflection) binds (GRPC_HOST): by
   * default 127.0.0.1 while authentication is off, 0.0.0.0 once it is on.
   */
  readonly grpcHost: string;
  /** Interface the HTTP health port binds (HTTP_HOST), with the same default. */
  readonly httpHost: string;
  /** TLS, authentication and reflection of the gRPC API (MULTIAGENTS_TLS_*, MULTIAGENTS_AUTH_*, GRPC_REFLECTION). */
  readonly security: ControlPlaneSecurity;
  /**
   * OpenTelemetry tracing from the standard `OTEL_*` variables (OTEL_EXPORTER_OTLP_ENDPOINT,
   * OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, …); undefined (off) when no endpoint is set.
   */
  readonly tracing?: TracingConfig;
}

/** The only place the worker-manager reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): WorkerManagerConfig {
  const problems: string[] = [];
  const report = (problem: string): number => problems.push(problem);
  let base: ServiceConfig | undefined;
  try {
    base = parseServiceConfig(env, { grpcPort: 50052 });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems.push(...err.problems);
  }
  const workerModules = listVariable(env, 'MULTIAGENTS_WORKER_MODULES');
  if (workerModules.length === 0) {
    problems.push('MULTIAGENTS_WORKER_MODULES is required: the modules whose workers this replica hosts');
  }
  if (base?.backend === 'memory') {
    problems.push(
      'MULTIAGENTS_BACKEND=memory: a separate worker-manager needs a shared backend (redis or nats); in the embedded mode the orchestrator process hosts the workers',
    );
  }
  const visibilityTimeoutMs = timerDelayVariable(env, 'MULTIAGENTS_VISIBILITY_TIMEOUT_MS', report);
  const maxDeliveries = positiveIntegerVariable(env, 'MULTIAGENTS_MAX_DELIVERIES', report);
  const drainTimeoutMs = timerDelayVariable(env, 'MULTIAGENTS_DRAIN_TIMEOUT_MS', report);
  let security: ControlPlaneSecurity | undefined;
  try {
    security = parseControlPlaneSecurity(env, { checkFiles: true });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems.push(...err.problems);
  }
  let tracing: TracingConfig | undefined;
  try {
    tracing = parseTracingConfig(env, { serviceName: 'worker-manager' });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems.push(...err.problems);
  }
  if (problems.length > 0) throw new ValidationError('invalid worker-manager configuration', problems);
  return {
    ...(base as ServiceConfig),
    workerModules,
    grpcHost: (security as ControlPlaneSecurity).grpcHost,
    httpHost: (security as ControlPlaneSecurity).httpHost,
    security: security as ControlPlaneSecurity,
    ...(visibilityTimeoutMs === undefined ? {} : { visibilityTimeoutMs }),
    ...(maxDeliveries === undefined ? {} : { maxDeliveries }),
    ...(drainTimeoutMs === undefined ? {} : { drainTimeoutMs }),
    ...(tracing === undefined ? {} : { tracing }),
  };
}
