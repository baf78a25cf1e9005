/**
 * The typed gRPC client of the MultiAgents orchestrator, for users' own services (the
 * `multiagents` CLI is built on it). Domain types in, domain types out; failures are
 * MultiAgentsError subclasses with stable codes.
 *
 * @example
 * ```ts
 * import { connect } from '@multiagents/client';
 *
 * const client = connect('127.0.0.1:50051');
 * const { txId } = await client.startWorkflow('order_processing', { orderId: 'o-1', total: 42 }, {
 *   idempotencyKey: 'order-o-1',
 * });
 * for await (const run of client.watchWorkflow(txId)) render(run.state);
 * client.close();
 * ```
 */
export { connect, MultiAgentsClient } from './multiagents-client';
/** The event-monitor's client: timelines, stuck runs, dead letters, workers, the event stream. */
export { connectMonitor, EventMonitorClient } from './event-monitor-client';
export type {
  RunTimelineView,
  TimelineTransition,
  StuckRunView,
  DeadLetterView,
} from './event-monitor-client';
export { DEFAULT_CLIENT_OPTIONS } from './client-options';
export type { ClientOptions, ClientTlsOptions, RetryOptions, ResolvedClientOptions } from './client-options';
export { RpcError, RpcErrorCode, fromServiceError } from './client-errors';
export type {
  CallOptions,
  CircuitStateName,
  DrainResult,
  MonitoredWorkerManagerView,
  RegisterWorkflowResult,
  WorkerManagerSummary,
  StartWorkflowResult,
  WorkerList,
  WorkerStatus,
  WorkflowDefinitionSummary,
  WorkflowFilter,
  WorkflowPage,
} from './client-types';
