import { positiveIntegerVariable, timerDelayVariable } from '@multiagents/core';
import { parseServiceConfig, type ServiceConfig } from '@multiagents/backends';
import { ValidationError } from '@multiagents/contracts';

/** Default HTTP_PORT: the port Prometheus exporters of this kind usually take. */
export const DEFAULT_METRICS_HTTP_PORT = 9464;

/** The metrics-collector's settings: SPEC §7 plus delivery tuning and label caps. */
export interface MetricsCollectorConfig extends ServiceConfig {
  /** HTTP_PORT: /healthz, /readyz, /stats and /metrics (default {@link DEFAULT_METRICS_HTTP_PORT}). */
  readonly httpPort: number;
  /** HTTP_HOST: nothing here asks for credentials, so loopback unless told otherwise. */
  readonly httpHost: string;
  /** MULTIAGENTS_VISIBILITY_TIMEOUT_MS: an event a dead replica held goes to another after this long. */
  readonly visibilityTimeoutMs?: number;
  /** MULTIAGENTS_MAX_DELIVERIES: deliveries of a failing event before it is dead-lettered. */
  readonly maxDeliveries?: number;
  /** MULTIAGENTS_METRICS_MAX_WORKFLOWS, _MAX_STEPS_PER_WORKFLOW, _MAX_WORKERS: label caps. */
  readonly maxWorkflows?: number;
  readonly maxStepsPerWorkflow?: number;
  readonly maxWorkers?: number;
}

/** The only place the metrics-collector reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): MetricsCollectorConfig {
  const problems: string[] = [];
  const report = (problem: string): number => problems.push(problem);
  let base: ServiceConfig | undefined;
  try {
    // No gRPC API: the port parsed here is unused.
    base = parseServiceConfig(env, { grpcPort: 0 });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems.push(...err.problems);
  }
  // Read from the variable itself: a problem elsewhere in the shared settings leaves `base` unset.
  if ((env['MULTIAGENTS_BACKEND'] || 'memory') === 'memory') {
    problems.push(
      'MULTIAGENTS_BACKEND=memory: a separate metrics-collector needs a shared backend (redis or nats)',
    );
  }
  const optional = {
    visibilityTimeoutMs: timerDelayVariable(env, 'MULTIAGENTS_VISIBILITY_TIMEOUT_MS', report),
    maxDeliveries: positiveIntegerVariable(env, 'MULTIAGENTS_MAX_DELIVERIES', report),
    maxWorkflows: positiveIntegerVariable(env, 'MULTIAGENTS_METRICS_MAX_WORKFLOWS', report),
    maxStepsPerWorkflow: positiveIntegerVariable(env, 'MULTIAGENTS_METRICS_MAX_STEPS_PER_WORKFLOW', report),
    maxWorkers: positiveIntegerVariable(env, 'MULTIAGENTS_METRICS_MAX_WORKERS', report),
  };
  if (problems.length > 0) throw new ValidationError('invalid metrics-collector configuration', problems);
  const config = base as ServiceConfig;
  return {
    ...config,
    httpPort: config.httpPort ?? DEFAULT_METRICS_HTTP_PORT,
    httpHost: env['HTTP_HOST'] || '127.0.0.1',
    ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
  };
}
