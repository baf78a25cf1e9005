/**
 * Stable error codes. They cross process boundaries (bus payloads, gRPC status details), so
 * callers compare `code`, never `instanceof`.
 */
export const ErrorCode = {
  InvalidArgument: 'INVALID_ARGUMENT',
  NotFound: 'NOT_FOUND',
  AlreadyExists: 'ALREADY_EXISTS',
  FailedPrecondition: 'FAILED_PRECONDITION',
  ResourceExhausted: 'RESOURCE_EXHAUSTED',
  Unauthenticated: 'UNAUTHENTICATED',
  PermissionDenied: 'PERMISSION_DENIED',
  Conflict: 'CONFLICT',
  IllegalTransition: 'ILLEGAL_TRANSITION',
  Timeout: 'TIMEOUT',
  HeartbeatTimeout: 'HEARTBEAT_TIMEOUT',
  WaitTimeout: 'WAIT_TIMEOUT',
  Cancelled: 'CANCELLED',
  NonRetryable: 'NON_RETRYABLE',
  WorkerError: 'WORKER_ERROR',
  NonErrorThrown: 'NON_ERROR_THROWN',
  UnknownWorker: 'UNKNOWN_WORKER',
  CircuitOpen: 'CIRCUIT_OPEN',
  PoisonMessage: 'POISON_MESSAGE',
  /** A run's token or cost budget would be exceeded by dispatching a step (non-retryable). */
  BudgetExceeded: 'BUDGET_EXCEEDED',
  /** An encoded (encrypted) payload that cannot be decoded: tampered with, unknown key or codec. */
  PayloadRejected: 'PAYLOAD_REJECTED',
  /** No worker took a command within its step's schedule-to-start timeout (non-retryable). */
  NoWorker: 'NO_WORKER',
  /** The service cannot answer yet (starting, waiting for its broker): try again. */
  Unavailable: 'UNAVAILABLE',
  Internal: 'INTERNAL',
} as const;
/** One of {@link ErrorCode}'s values, or a worker-defined code. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An error as it travels between processes: plain data, no prototype. */
export interface ErrorInfo {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly details?: Record<string, unknown>;
  /** The failed step left effects behind, so its compensation must run too (SPEC §3). */
  readonly partialEffects?: boolean;
}

/** Options shared by every MultiAgents error. */
export interface MultiAgentsErrorOptions {
  readonly cause?: unknown;
  readonly details?: Record<string, unknown>;
  readonly retryable?: boolean;
}

/** The root of every error MultiAgents throws; `code` is stable, the message is for humans. */
export class MultiAgentsError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: MultiAgentsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
    this.retryable = options.retryable ?? true;
  }

  /** The wire form of this error. */
  toInfo(): ErrorInfo {
    return {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

/**
 * Thrown by a worker to say "retrying will not help": the step fails at once, without using its
 * remaining attempts. Set `partialEffects` when the attempt changed something that needs undoing.
 */
export class NonRetryableError extends MultiAgentsError {
  readonly partialEffects: boolean;

  constructor(
    message: string,
    options: MultiAgentsErrorOptions & { code?: string; partialEffects?: boolean } = {},
  ) {
    super(options.code ?? ErrorCode.NonRetryable, message, { ...options, retryable: false });
    this.partialEffects = options.partialEffects ?? false;
  }

  override toInfo(): ErrorInfo {
    return { ...super.toInfo(), ...(this.partialEffects ? { partialEffects: true } : {}) };
  }
}

/** Bad input: carries every problem found, not just the first. */
export class ValidationError extends MultiAgentsError {
  readonly problems: readonly string[];

  constructor(what: string, problems: readonly string[]) {
    super(ErrorCode.InvalidArgument, `${what}: ${problems.join('; ')}`, {
      retryable: false,
      details: { problems: [...problems] },
    });
    this.problems = problems;
  }
}

/** No run has this transaction id. */
export class RunNotFoundError extends MultiAgentsError {
  constructor(readonly txId: string) {
    super(ErrorCode.NotFound, `run ${txId} not found`, { retryable: false, details: { txId } });
  }
}

/** No definition has this id (and version, when given). */
export class DefinitionNotFoundError extends MultiAgentsError {
  constructor(
    readonly workflowId: string,
    readonly version?: number,
  ) {
    super(
      ErrorCode.NotFound,
      version === undefined
        ? `workflow ${workflowId} not found`
        : `workflow ${workflowId} version ${version} not found`,
      { retryable: false, details: { workflowId, ...(version === undefined ? {} : { version }) } },
    );
  }
}

/** Something with this identity exists already, with different content. */
export class AlreadyExistsError extends MultiAgentsError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.AlreadyExists, message, { retryable: false, ...(details ? { details } : {}) });
  }
}

/** The run is not in a state that allows the request (signal a finished run, retry a running step). */
export class FailedPreconditionError extends MultiAgentsError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.FailedPrecondition, message, { retryable: false, ...(details ? { details } : {}) });
  }
}

/** A payload or definition is larger than the configured limit. */
export class ResourceExhaustedError extends MultiAgentsError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.ResourceExhausted, message, { retryable: false, ...(details ? { details } : {}) });
  }
}

/** The engine was asked for a state change SPEC §3 forbids: a bug, refused rather than applied. */
export class IllegalTransitionError extends MultiAgentsError {
  constructor(
    readonly from: string,
    readonly to: string,
    readonly txId?: string,
  ) {
    super(ErrorCode.IllegalTransition, `illegal transition ${from} -> ${to}${txId ? ` (run ${txId})` : ''}`, {
      retryable: false,
      details: { from, to, ...(txId ? { txId } : {}) },
    });
  }
}

/**
 * A bus message that can never be handled (undecodable, forged, wrong shape). Throwing it from a
 * bus handler dead-letters the message at once instead of redelivering it.
 */
export class PoisonMessageError extends MultiAgentsError {
  constructor(message: string, options: MultiAgentsErrorOptions = {}) {
    super(ErrorCode.PoisonMessage, message, { ...options, retryable: false });
  }
}

/**
 * No credentials, or credentials that do not verify (expired, wrong audience or issuer, bad
 * signature, unknown certificate). `details.subject` names the caller when it is known; the
 * credential itself never appears.
 */
export class UnauthenticatedError extends MultiAgentsError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.Unauthenticated, message, { retryable: false, ...(details ? { details } : {}) });
  }
}

/** The caller is known but may not do this (its role is too low, or the workflow is not its). */
export class PermissionDeniedError extends MultiAgentsError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.PermissionDenied, message, { retryable: false, ...(details ? { details } : {}) });
  }
}

/**
 * An encoded payload that cannot be decoded: tampered with, bound to another place, written with a
 * key id or codec this process does not hold. Never retryable: the same bytes fail the same way.
 * `details.reason` says which (`unknown_key`, `unknown_codec`, `malformed`, `tampered`).
 */
export class PayloadRejectedError extends MultiAgentsError {
  constructor(
    readonly reason: string,
    message: string,
    details: Record<string, unknown> = {},
  ) {
    super(ErrorCode.PayloadRejected, message, { retryable: false, details: { reason, ...details } });
  }
}

/** True when `value` looks like an error with a stable code (works across realms and processes). */
/**
 * True for a value too large to store or send (an envelope, a run record, a JSON document past
 * its byte limit), as opposed to a full stream or server: trying again cannot help, a smaller
 * value can. Such errors carry `maxBytes` (or `reason: 'too_large'`) in their details.
 */
export function isTooLargeError(value: unknown): boolean {
  if (!(value instanceof MultiAgentsError) || value.code !== ErrorCode.ResourceExhausted) return false;
  const details = value.details;
  return typeof details?.['maxBytes'] === 'number' || details?.['reason'] === 'too_large';
}

export function hasErrorCode(value: unknown, code: string): boolean {
  return typeof value === 'object' && value !== null && (value as { code?: unknown }).code === code;
}

/**
 * Turns anything thrown into an {@link ErrorInfo}. Use exactly at boundaries (bus handlers, gRPC
 * handlers, around user code): a worker may throw a string, `undefined` or a frozen object.
 */
export function toErrorInfo(thrown: unknown): ErrorInfo {
  if (thrown instanceof MultiAgentsError) return thrown.toInfo();
  if (thrown instanceof Error) {
    const tagged = thrown as Error & { code?: unknown; retryable?: unknown; partialEffects?: unknown };
    return {
      code: typeof tagged.code === 'string' ? tagged.code : ErrorCode.WorkerError,
      message: thrown.message || thrown.name,
      retryable: tagged.retryable !== false,
      ...(tagged.partialEffects === true ? { partialEffects: true } : {}),
    };
  }
  let text: string;
  try {
    text = typeof thrown === 'string' ? thrown : (JSON.stringify(thrown) ?? String(thrown));
  } catch {
    text = String(thrown);
  }
  return { code: ErrorCode.NonErrorThrown, message: `non-Error value thrown: ${text}`, retryable: true };
}
