import type { Logger } from '@multiagents/core';
import type { ProgressUpdate } from './progress-throttle';

/** What a worker handler knows about the attempt it runs, and how it talks back while running. */
export interface WorkerContext {
  readonly txId: string;
  readonly workflowId: string;
  /** The step's name in the workflow definition. */
  readonly step: string;
  /** The attempt number the orchestrator gave this command. */
  readonly attempt: number;
  /**
   * The same for every attempt of one step of one run (`<txId>:<step>`, `<txId>:<step>:undo` for a
   * compensation): pass it to external systems so their effects happen exactly once.
   */
  readonly idempotencyKey: string;
  /** True when this attempt undoes a step (the worker runs as a compensation). */
  readonly compensation: boolean;
  /**
   * Fires when the attempt's timeout passes, when the WorkerManager gives up waiting during
   * shutdown, or when the attempt is cancelled. Pass it to I/O calls and stop promptly: a handler
   * that ignores it is reported as timed out (or aborted) anyway, and keeps running in the
   * background holding one of the worker's `concurrency` slots until it returns.
   */
  readonly signal: AbortSignal;
  /**
   * Says the step is alive: publishes a `step.heartbeat` (at most about once a second) and keeps
   * the broker from handing the command to another replica. Never rejects.
   */
  heartbeat(details?: unknown): Promise<void>;
  /**
   * Streams partial output (an agent's token deltas) as `step.progress` events. Returns at once and
   * never throws: reports are coalesced and published at a bounded rate, best effort, and ignored
   * once the attempt has ended. Optional so that hosts other than the WorkerManager may omit it.
   */
  readonly progress?: (update: ProgressUpdate) => void;
  /**
   * The W3C trace context (`traceparent`, maybe `tracestate`) of this attempt's span, when the run
   * is traced: the parent to give the spans the handler makes (an agent's model and tool calls),
   * so they join the run's trace without a context manager.
   */
  readonly traceHeaders?: Readonly<Record<string, string>>;
  /** A child logger carrying `worker`, `txId`, `step` and `attempt`. */
  readonly logger: Logger;
}
