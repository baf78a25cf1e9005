import {
  AlreadyExistsError,
  FailedPreconditionError,
  MultiAgentsError,
  RunNotFoundError,
  ValidationError,
} from '@multiagents/contracts';
import { ExitCode, exitCodeFor, UsageError } from './exit-codes';

describe('exit codes', () => {
  it.each([
    [new UsageError('bad flag'), ExitCode.Usage],
    [new ValidationError('invalid request', ['x']), ExitCode.Usage],
    [new RunNotFoundError('t'), ExitCode.NotFound],
    [new FailedPreconditionError('done'), ExitCode.Conflict],
    [new AlreadyExistsError('dup'), ExitCode.Conflict],
    [new MultiAgentsError('CONFLICT', 'busy'), ExitCode.Conflict],
    [new MultiAgentsError('UNAVAILABLE', 'down'), ExitCode.Failure],
    [new MultiAgentsError('UNIMPLEMENTED', 'later'), ExitCode.Failure],
    [new Error('anything'), ExitCode.Failure],
  ])('%p exits with %p', (err, code) => {
    expect(exitCodeFor(err)).toBe(code);
  });

  it('keeps the documented numbers', () => {
    expect(ExitCode).toEqual({ Ok: 0, Failure: 1, Usage: 2, NotFound: 3, Conflict: 4, RunNotCompleted: 5 });
  });
});
