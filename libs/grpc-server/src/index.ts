/**
 * The control plane over gRPC (SPEC §6): OrchestratorService and WorkerManagerService handlers,
 * the mappers between proto messages and domain types, health and reflection. Self-contained
 * (it imports packages only), so the worker-manager service can serve it too.
 *
 * @example
 * const server = new ControlPlaneServer({ orchestrator, workerManager, port: 50051, logger });
 * const { address } = await server.start();
 */
export {
  ControlPlaneServer,
  DEFAULT_CONTROL_PLANE_SERVER_OPTIONS,
  ORCHESTRATOR_SERVICE_NAME,
  WORKER_MANAGER_SERVICE_NAME,
} from './control-plane-server';
export type { ControlPlaneServerOptions } from './control-plane-server';
export type { OrchestratorApi } from './orchestrator-service';
export type { WorkerManagerApi } from './worker-manager-service';
