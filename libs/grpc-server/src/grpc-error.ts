/**
 * Errors → gRPC statuses, by their stable MultiAgents `code` (never `instanceof`: an adapter may
 * throw an error from another realm). Unknown thrown values, and INTERNAL errors (what the adapters
 * wrap a driver's failure in), become INTERNAL with a fixed message: stacks and driver messages
 * stay in the server log.
 */
import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';

/** Trailing metadata key carrying the MultiAgents error code, so clients rebuild the exact error. */
export const ERROR_CODE_METADATA_KEY = 'multiagents-error-code';
/**
 * Trailing metadata key carrying the error's `details` as UTF-8 JSON (for example
 * `{ "problems": [...] }`); binary (`-bin`) because problems may quote any text.
 */
export const ERROR_DETAILS_METADATA_KEY = 'multiagents-error-details-bin';

/** Largest `details` JSON put into trailers; HTTP/2 header lists are small (8-16 KiB by default). */
const MAX_DETAILS_BYTES = 4096;

/** MultiAgents code → gRPC status code (SPEC §6). Codes not listed are INTERNAL. */
export const GRPC_STATUS_BY_ERROR_CODE: Readonly<Record<string, status>> = {
  [ErrorCode.InvalidArgument]: status.INVALID_ARGUMENT,
  [ErrorCode.NotFound]: status.NOT_FOUND,
  [ErrorCode.AlreadyExists]: status.ALREADY_EXISTS,
  [ErrorCode.FailedPrecondition]: status.FAILED_PRECONDITION,
  [ErrorCode.ResourceExhausted]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.Unauthenticated]: status.UNAUTHENTICATED,
  [ErrorCode.PermissionDenied]: status.PERMISSION_DENIED,
  // Compare-and-set kept losing to other writers: safe to try again.
  [ErrorCode.Conflict]: status.ABORTED,
  [ErrorCode.Timeout]: status.DEADLINE_EXCEEDED,
  [ErrorCode.Cancelled]: status.CANCELLED,
  [ErrorCode.Unavailable]: status.UNAVAILABLE,
};

/** A gRPC status to answer with, plus whether it hides an unexpected error (to be logged). */
export interface MappedStatus {
  readonly status: Partial<StatusObject> & { code: status; details: string };
  readonly unexpected: boolean;
}

/** Turns anything a handler threw into the status the caller sees. */
export function toGrpcStatus(thrown: unknown): MappedStatus {
  if (thrown instanceof MultiAgentsError || isCodedError(thrown)) {
    const code = GRPC_STATUS_BY_ERROR_CODE[thrown.code];
    const metadata = new Metadata();
    metadata.set(ERROR_CODE_METADATA_KEY, thrown.code);
    if (thrown.details !== undefined) {
      const json = Buffer.from(JSON.stringify(thrown.details) ?? 'null', 'utf8');
      if (json.length <= MAX_DETAILS_BYTES) metadata.set(ERROR_DETAILS_METADATA_KEY, json);
    }
    if (code !== undefined) {
      return { status: { code, details: thrown.message, metadata }, unexpected: false };
    }
    if (thrown.code === ErrorCode.Internal) {
      // What the adapters wrap a driver's failure in: its text can name keys, users and scripts.
      const bare = new Metadata();
      bare.set(ERROR_CODE_METADATA_KEY, ErrorCode.Internal);
      return {
        status: { code: status.INTERNAL, details: 'internal error (see the server log)', metadata: bare },
        unexpected: true,
      };
    }
    // Ours but not meant for callers (an illegal transition is a bug): the code is safe to show.
    return {
      status: { code: status.INTERNAL, details: `${thrown.code}: ${thrown.message}`, metadata },
      unexpected: true,
    };
  }
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA_KEY, ErrorCode.Internal);
  return {
    status: { code: status.INTERNAL, details: 'internal error (see the server log)', metadata },
    unexpected: true,
  };
}

interface CodedError {
  readonly code: string;
  readonly message: string;
  readonly details?: Record<string, unknown>;
}

/** A MultiAgentsError from another copy of contracts: an Error with a string code we know. */
function isCodedError(value: unknown): value is CodedError {
  if (!(value instanceof Error)) return false;
  const code = (value as { code?: unknown }).code;
  return typeof code === 'string' && (Object.values(ErrorCode) as string[]).includes(code);
}
