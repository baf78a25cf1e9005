import { listVariable, parseServiceConfig, type ServiceConfig } from '@multiagents/core';
import { ValidationErrorList } from './config-support';

/** The orchestrator's settings: SPEC §7 plus what the embedded mode hosts. */
export interface OrchestratorConfig extends ServiceConfig {
  /**
   * Modules exporting `workers` (WorkerDefinition[]) hosted in this process: required with the
   * memory backend (the embedded mode), optional with Redis or NATS (workers usually run in
   * worker-manager replicas).
   */
  readonly workerModules: readonly string[];
  /** YAML/JSON definition files registered at start. */
  readonly definitionFiles: readonly string[];
  /** A result taken by an orchestrator that crashed goes to another after this long (ms). */
  readonly visibilityTimeoutMs?: number;
  /** Interface the gRPC API binds (GRPC_HOST). */
  readonly grpcHost: string;
  /** Largest gRPC message in or out (GRPC_MAX_MESSAGE_BYTES); larger requests get RESOURCE_EXHAUSTED. */
  readonly grpcMaxMessageBytes: number;
}

/** Default of GRPC_MAX_MESSAGE_BYTES: gRPC's own default, 4 MiB. */
export const DEFAULT_GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Largest GRPC_MAX_MESSAGE_BYTES accepted (1 GiB): beyond it one request could exhaust memory. */
const MAX_GRPC_MAX_MESSAGE_BYTES = 1024 * 1024 * 1024;

/** The only place the orchestrator reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): OrchestratorConfig {
  const problems = new ValidationErrorList();
  const base = problems.collect(() => parseServiceConfig(env, { grpcPort: 50051 }));
  const workerModules = listVariable(env, 'MULTIAGENTS_WORKER_MODULES');
  const definitionFiles = listVariable(env, 'MULTIAGENTS_DEFINITIONS');
  if (base?.backend === 'memory' && workerModules.length === 0) {
    problems.add(
      'MULTIAGENTS_WORKER_MODULES is required with the memory backend: the embedded mode hosts the workers',
    );
  }
  const grpcHost = env['GRPC_HOST'] || '0.0.0.0';
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
  const rawVisibility = env['MULTIAGENTS_VISIBILITY_TIMEOUT_MS'];
  const visibilityTimeoutMs = rawVisibility ? Number(rawVisibility) : undefined;
  if (
    visibilityTimeoutMs !== undefined &&
    !(Number.isInteger(visibilityTimeoutMs) && visibilityTimeoutMs > 0)
  ) {
    problems.add(`MULTIAGENTS_VISIBILITY_TIMEOUT_MS=${rawVisibility}: must be a positive integer`);
  }
  problems.throwIfAny('invalid orchestrator configuration');
  return {
    ...(base as ServiceConfig),
    workerModules,
    definitionFiles,
    grpcHost,
    grpcMaxMessageBytes,
    ...(visibilityTimeoutMs === undefined ? {} : { visibilityTimeoutMs }),
  };
}
