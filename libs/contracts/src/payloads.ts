import type { ErrorInfo } from './errors';

/** Payload of `step.command`: what a worker-manager needs to run one attempt. */
export interface StepCommandPayload {
  /** `<txId>:<step>:<attempt>`, or `<txId>:<step>:undo:<attempt>` for a compensation. */
  readonly commandId: string;
  readonly worker: string;
  readonly input: unknown;
  /** The same for every attempt of one step of one run: `<txId>:<step>` (`:undo` for compensations). */
  readonly idempotencyKey: string;
  readonly compensation: boolean;
  /** Per-attempt timeout; the worker's AbortSignal fires when it passes. */
  readonly timeoutMs?: number;
  readonly heartbeatTimeoutMs?: number;
}

/** Payload of `step.result`. */
export type StepResultPayload =
  | { readonly commandId: string; readonly worker: string; readonly ok: true; readonly output: unknown }
  | { readonly commandId: string; readonly worker: string; readonly ok: false; readonly error: ErrorInfo };

/** Payload of `step.heartbeat`: a long step says it is alive. */
export interface StepHeartbeatPayload {
  readonly commandId: string;
  readonly details?: unknown;
}

/** Payload of `worker.heartbeat`: a worker-manager announces what it serves. */
export interface WorkerHeartbeatPayload {
  readonly managerId: string;
  readonly workers: readonly string[];
  readonly inFlight: number;
}
