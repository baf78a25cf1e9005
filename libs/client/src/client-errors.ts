/**
 * gRPC errors → MultiAgentsError subclasses, by code. The server puts the exact MultiAgents code
 * and details in trailing metadata; without them (a proxy answered, or the connection failed) the
 * gRPC status code decides.
 */
import { status, type Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  DefinitionNotFoundError,
  ErrorCode,
  FailedPreconditionError,
  MultiAgentsError,
  ResourceExhaustedError,
  RunNotFoundError,
  ValidationError,
} from '@multiagents/contracts';

/** Codes of failures that are about the call, not the domain (they have no contracts class). */
export const RpcErrorCode = {
  /** The server could not be reached, or is shutting down: safe to retry idempotent calls. */
  Unavailable: 'UNAVAILABLE',
  /** The server does not implement this (yet). */
  Unimplemented: 'UNIMPLEMENTED',
  /** The call's deadline passed. */
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  Cancelled: ErrorCode.Cancelled,
  Internal: ErrorCode.Internal,
  Unknown: 'UNKNOWN',
} as const;
/** One of {@link RpcErrorCode}'s values. */
export type RpcErrorCode = (typeof RpcErrorCode)[keyof typeof RpcErrorCode];

/** A failed call with no domain meaning (unavailable, deadline, unimplemented, internal…). */
export class RpcError extends MultiAgentsError {
  constructor(
    code: string,
    message: string,
    /** The gRPC status code the server (or the channel) answered. */
    readonly grpcCode: number,
    options: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean } = {},
  ) {
    super(code, message, options);
  }
}

/** Trailing metadata key carrying the MultiAgents error code (set by the orchestrator). */
export const ERROR_CODE_METADATA_KEY = 'multiagents-error-code';
/** Trailing metadata key carrying the error's details as UTF-8 JSON. */
export const ERROR_DETAILS_METADATA_KEY = 'multiagents-error-details-bin';

const CODE_BY_STATUS: Readonly<Record<number, string>> = {
  [status.INVALID_ARGUMENT]: ErrorCode.InvalidArgument,
  [status.NOT_FOUND]: ErrorCode.NotFound,
  [status.ALREADY_EXISTS]: ErrorCode.AlreadyExists,
  [status.FAILED_PRECONDITION]: ErrorCode.FailedPrecondition,
  [status.RESOURCE_EXHAUSTED]: ErrorCode.ResourceExhausted,
  [status.UNAUTHENTICATED]: ErrorCode.Unauthenticated,
  [status.PERMISSION_DENIED]: ErrorCode.PermissionDenied,
  [status.ABORTED]: ErrorCode.Conflict,
  [status.UNAVAILABLE]: RpcErrorCode.Unavailable,
  [status.UNIMPLEMENTED]: RpcErrorCode.Unimplemented,
  [status.DEADLINE_EXCEEDED]: RpcErrorCode.DeadlineExceeded,
  [status.CANCELLED]: RpcErrorCode.Cancelled,
  [status.INTERNAL]: RpcErrorCode.Internal,
  [status.UNKNOWN]: RpcErrorCode.Unknown,
};

function firstString(metadata: Metadata | undefined, key: string): string | undefined {
  const value = metadata?.get(key)[0];
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

function detailsOf(metadata: Metadata | undefined): Record<string, unknown> | undefined {
  const json = firstString(metadata, ERROR_DETAILS_METADATA_KEY);
  if (json === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(json);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the server's message (the domain constructors build their own) and chains the cause. */
function withServerMessage<E extends MultiAgentsError>(error: E, message: string, cause: unknown): E {
  error.message = message;
  Object.defineProperty(error, 'cause', {
    value: cause,
    enumerable: false,
    writable: true,
    configurable: true,
  });
  return error;
}

/** True for a grpc-js call error (it carries a numeric `code` and `metadata`). */
export function isServiceError(value: unknown): value is ServiceError {
  return value instanceof Error && typeof (value as { code?: unknown }).code === 'number';
}

/**
 * Why the channel could not reach the server, in a person's words: grpc-js says "No connection
 * established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: " (the note
 * often empty); this keeps the last error and a non-empty note.
 */
export function unavailableReason(details: string): string {
  let reason = details.trim();
  let note = '';
  const noted = /\s*Resolution note:\s*(.*)$/s.exec(reason);
  if (noted) {
    reason = reason.slice(0, noted.index);
    note = noted[1]?.trim() ?? '';
  }
  reason = reason
    .replace(/^No connection established\.\s*Last error:\s*/, '')
    .replace(/^(?:Error:\s*)+/, '')
    .replace(/\.$/, '');
  if (reason === '') reason = 'no connection';
  return note === '' ? reason : `${reason} (${note})`;
}

/**
 * The MultiAgentsError a failed call stands for. Anything that is not a ServiceError passes through.
 * With the `address` called, an UNAVAILABLE the channel raised (no server answered) names it:
 * `server at 127.0.0.1:1 unavailable: connect ECONNREFUSED 127.0.0.1:1`, and keeps it in
 * `details.address`.
 */
export function fromServiceError(err: unknown, context: { address?: string } = {}): unknown {
  if (!isServiceError(err)) return err;
  const serverCode = firstString(err.metadata, ERROR_CODE_METADATA_KEY);
  const code = serverCode ?? CODE_BY_STATUS[err.code] ?? 'UNKNOWN';
  let details = detailsOf(err.metadata);
  let message = err.details || err.message;
  if (err.code === status.UNAVAILABLE && serverCode === undefined && context.address !== undefined) {
    message = `server at ${context.address} unavailable: ${unavailableReason(message)}`;
    details = { ...details, address: context.address };
  }
  switch (code) {
    case ErrorCode.InvalidArgument: {
      const problems = Array.isArray(details?.['problems'])
        ? (details['problems'] as unknown[]).map(String)
        : [message];
      return withServerMessage(new ValidationError('invalid request', problems), message, err);
    }
    case ErrorCode.NotFound: {
      const txId = details?.['txId'];
      const workflowId = details?.['workflowId'];
      const version = details?.['version'];
      if (typeof txId === 'string') return withServerMessage(new RunNotFoundError(txId), message, err);
      if (typeof workflowId === 'string') {
        return withServerMessage(
          new DefinitionNotFoundError(workflowId, typeof version === 'number' ? version : undefined),
          message,
          err,
        );
      }
      return new MultiAgentsError(ErrorCode.NotFound, message, {
        cause: err,
        retryable: false,
        ...(details ? { details } : {}),
      });
    }
    case ErrorCode.AlreadyExists:
      return withServerMessage(new AlreadyExistsError(message, details), message, err);
    case ErrorCode.FailedPrecondition:
      return withServerMessage(new FailedPreconditionError(message, details), message, err);
    case ErrorCode.ResourceExhausted:
      return withServerMessage(new ResourceExhaustedError(message, details), message, err);
    default:
      return new RpcError(code, message, err.code, {
        cause: err,
        retryable: err.code === status.UNAVAILABLE || err.code === status.ABORTED,
        ...(details ? { details } : {}),
      });
  }
}
