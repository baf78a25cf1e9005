import type { Run, RunState } from '@multiagents/contracts';

/** A registered definition id with its versions (ListWorkflowDefinitions). */
export interface WorkflowDefinitionSummary {
  readonly id: string;
  readonly latestVersion: number;
  /** Every registered version, ascending. */
  readonly versions: readonly number[];
  /** The latest version's description. */
  readonly description?: string;
}

/** What {@link MultiAgentsClient.registerWorkflow} answers. */
export interface RegisterWorkflowResult {
  /** False when this exact id, version and content were registered before. */
  readonly created: boolean;
  readonly id: string;
  readonly version: number;
  /** What did not stop the registration but is worth knowing (workers no live replica hosts). */
  readonly warnings: readonly string[];
}

/** One live worker-manager replica, as {@link MultiAgentsClient.listWorkerManagers} answers. */
export interface WorkerManagerSummary {
  readonly managerId: string;
  readonly workers: readonly string[];
  readonly capacity: number;
  readonly inFlight: number;
  /** When it last announced itself (ms since the epoch). */
  readonly seenAt: number;
  readonly details: Readonly<Record<string, string>>;
}

/** What {@link MultiAgentsClient.startWorkflow} answers. */
export interface StartWorkflowResult {
  readonly txId: string;
  /** False when the idempotency key had started this run before. */
  readonly created: boolean;
}

/** Filters of {@link MultiAgentsClient.listWorkflows}, combined with AND. */
export interface WorkflowFilter {
  readonly state?: RunState;
  readonly workflowId?: string;
  /** Inclusive bounds on when the run was started (ms since the epoch, or a Date). */
  readonly createdAfter?: number | Date;
  readonly createdBefore?: number | Date;
}

/** One page of runs, newest first. */
export interface WorkflowPage {
  readonly runs: readonly Run[];
  /** Pass as `pageToken` for the next page; absent on the last page. */
  readonly nextPageToken?: string;
}

/** A worker's circuit-breaker state as the worker-manager reports it. */
export type CircuitStateName = 'closed' | 'open' | 'half-open' | 'isolated' | 'disabled' | 'unknown';

/** One worker hosted by a worker-manager (ListWorkers). */
export interface WorkerStatus {
  readonly name: string;
  /** Attempts in flight (running, or waiting for a slot). */
  readonly inFlight: number;
  readonly capacity: number;
  readonly circuit: CircuitStateName;
  /**
   * Handlers still running after their attempt ended (they ignored their abort signal): each
   * holds one of the `capacity` slots until it settles. 0 from a server too old to count them.
   */
  readonly lingering: number;
}

/** What {@link MultiAgentsClient.listWorkers} answers. */
export interface WorkerList {
  readonly managerId: string;
  /** True once a drain has begun. */
  readonly draining: boolean;
  readonly workers: readonly WorkerStatus[];
}

/** What {@link MultiAgentsClient.drain} answers, once the worker-manager has drained. */
export interface DrainResult {
  readonly managerId: string;
  readonly workers: readonly WorkerStatus[];
}

/** Options of one call. */
export interface CallOptions {
  /** Deadline of the call, retries included; the client's `timeoutMs` by default. */
  readonly timeoutMs?: number;
  /** Aborting cancels the call (it rejects with CANCELLED). */
  readonly signal?: AbortSignal;
  /**
   * W3C `traceparent` / `tracestate` sent as call metadata: a run started with them is traced as
   * a child of the caller's span.
   */
  readonly traceHeaders?: Readonly<Record<string, string>>;
}

/** A worker-manager replica as the event-monitor knows it ({@link EventMonitorClient.listWorkers}). */
export interface MonitoredWorkerManagerView {
  readonly managerId: string;
  readonly workers: readonly string[];
  readonly capacity: number;
  readonly inFlight: number;
  readonly seenAt: number;
  /** False once it went silent. */
  readonly live: boolean;
  readonly details: Readonly<Record<string, string>>;
  /**
   * Handlers it ran past their attempts (each holding a slot) at its last heartbeat the monitor
   * received; 0 when the monitor has seen none yet, or from an older worker-manager or monitor.
   */
  readonly lingering: number;
}
