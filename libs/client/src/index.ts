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
export { DEFAULT_CLIENT_OPTIONS } from './client-options';
export type { ClientOptions, RetryOptions, ResolvedClientOptions } from './client-options';
export { RpcError, RpcErrorCode, fromServiceError } from './client-errors';
export type {
  CallOptions,
  CircuitStateName,
  DrainResult,
  RegisterWorkflowResult,
  StartWorkflowResult,
  WorkerList,
  WorkerStatus,
  WorkflowDefinitionSummary,
  WorkflowFilter,
  WorkflowPage,
} from './client-types';
