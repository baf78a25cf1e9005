import { ValidationError } from '@multiagents/contracts';
import { listVariable, parseServiceConfig, type ServiceConfig } from '@multiagents/core';

/** The worker-manager's settings: SPEC §7 plus the worker modules it hosts. */
export interface WorkerManagerConfig extends ServiceConfig {
  /** Modules exporting `workers` (WorkerDefinition[]). */
  readonly workerModules: readonly string[];
}

/** The only place the worker-manager reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): WorkerManagerConfig {
  const problems: string[] = [];
  let base: ServiceConfig | undefined;
  try {
    base = parseServiceConfig(env, { grpcPort: 50052 });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems.push(...err.problems);
  }
  const workerModules = listVariable(env, 'MULTIAGENTS_WORKER_MODULES');
  if (workerModules.length === 0)
    problems.push('MULTIAGENTS_WORKER_MODULES is required: the modules whose workers this replica hosts');
  if (base?.backend === 'memory') {
    problems.push(
      'MULTIAGENTS_BACKEND=memory: a separate worker-manager needs a shared backend (redis or nats); in the embedded mode the orchestrator process hosts the workers',
    );
  } else if (base) {
    problems.push(`MULTIAGENTS_BACKEND=${base.backend}: not available in this build yet`);
  }
  if (problems.length > 0) throw new ValidationError('invalid worker-manager configuration', problems);
  return { ...(base as ServiceConfig), workerModules };
}
