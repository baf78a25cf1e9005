import { ErrorCode, hasErrorCode } from '@multiagents/contracts';

/**
 * Exit codes of `multiagents`, stable for scripts:
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success |
 * | 1 | any other failure: server unreachable, internal or unimplemented, deadline exceeded |
 * | 2 | usage: bad command line, unreadable input or definition file, or INVALID_ARGUMENT |
 * | 3 | not found: no such run or workflow (NOT_FOUND) |
 * | 4 | conflict: wrong state for the request (FAILED_PRECONDITION), ALREADY_EXISTS, or ABORTED |
 * | 5 | `watch` / `start --watch`: the run ended, but not `completed` |
 */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
  NotFound: 3,
  Conflict: 4,
  RunNotCompleted: 5,
} as const;
/** One of {@link ExitCode}'s values. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A mistake on the command line (bad flag value, unreadable file): exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The exit code for an error, by its stable code (never by message). */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError) return ExitCode.Usage;
  if (hasErrorCode(err, ErrorCode.InvalidArgument)) return ExitCode.Usage;
  if (hasErrorCode(err, ErrorCode.NotFound)) return ExitCode.NotFound;
  if (
    hasErrorCode(err, ErrorCode.FailedPrecondition) ||
    hasErrorCode(err, ErrorCode.AlreadyExists) ||
    hasErrorCode(err, ErrorCode.Conflict)
  ) {
    return ExitCode.Conflict;
  }
  return ExitCode.Failure;
}
