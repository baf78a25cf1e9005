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
  EVENT_MONITOR_SERVICE_NAME,
} from './control-plane-server';
export type { ControlPlaneServerOptions } from './control-plane-server';
export type { OrchestratorApi } from './orchestrator-service';
/** Serving before the implementation exists (a service waiting for its broker). */
export { deferredApi } from './deferred-api';
export type { DeferredApi } from './deferred-api';
export type { WorkerManagerApi } from './worker-manager-service';
/** What EventMonitorService serves, and the domain envelope as its proto message. */
export type { EventMonitorApi, MonitorTimeline, MonitorStuckRun } from './event-monitor-service';
export type { MonitorWorkerManager } from './mappers';
export { envelopeToProto } from './event-monitor-service';
export { Authorizer, Role, METHOD_POLICIES, DEFAULT_JWT_OPTIONS, isRole, policyOf } from './authorizer';
export type { AuthOptions, JwtOptions, Principal, MethodPolicy, WorkflowScope } from './authorizer';
export { WatchedTlsFiles, DEFAULT_TLS_RELOAD_INTERVAL_MS } from './tls-files';
export type { ServerTlsOptions } from './tls-files';
export { parseControlPlaneSecurity, SECURITY_VARIABLES } from './security-config';
export type { ControlPlaneSecurity } from './security-config';
export { checkServerTlsFiles } from './tls-files';
