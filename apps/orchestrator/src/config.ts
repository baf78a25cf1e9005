import { listVariable, parseServiceConfig, ValidationErrorList, type ServiceConfig } from './config-support';

/** The orchestrator's settings: SPEC §7 plus what the embedded mode hosts. */
export interface OrchestratorConfig extends ServiceConfig {
  /** Modules exporting `workers` (WorkerDefinition[]) hosted in this process (memory backend). */
  readonly workerModules: readonly string[];
  /** YAML/JSON definition files registered at start. */
  readonly definitionFiles: readonly string[];
}

/** The only place the orchestrator reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): OrchestratorConfig {
  const problems = new ValidationErrorList();
  const base = problems.collect(() => parseServiceConfig(env, { grpcPort: 50051 }));
  const workerModules = listVariable(env, 'MULTIAGENTS_WORKER_MODULES');
  const definitionFiles = listVariable(env, 'MULTIAGENTS_DEFINITIONS');
  if (base && base.backend !== 'memory') {
    problems.add(
      `MULTIAGENTS_BACKEND=${base.backend}: not available in this build yet; use memory (the embedded mode)`,
    );
  }
  if (base?.backend === 'memory' && workerModules.length === 0) {
    problems.add(
      'MULTIAGENTS_WORKER_MODULES is required with the memory backend: the embedded mode hosts the workers',
    );
  }
  problems.throwIfAny('invalid orchestrator configuration');
  return { ...(base as ServiceConfig), workerModules, definitionFiles };
}
