import { status } from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  DefinitionNotFoundError,
  ErrorCode,
  FailedPreconditionError,
  IllegalTransitionError,
  MultiAgentsError,
  ResourceExhaustedError,
  RunNotFoundError,
  ValidationError,
} from '@multiagents/contracts';
import { ERROR_CODE_METADATA_KEY, ERROR_DETAILS_METADATA_KEY, toGrpcStatus } from './grpc-error';

describe('toGrpcStatus', () => {
  it.each([
    [new ValidationError('bad', ['a', 'b']), status.INVALID_ARGUMENT],
    [new RunNotFoundError('t-1'), status.NOT_FOUND],
    [new DefinitionNotFoundError('w'), status.NOT_FOUND],
    [new AlreadyExistsError('dup'), status.ALREADY_EXISTS],
    [new FailedPreconditionError('done'), status.FAILED_PRECONDITION],
    [new ResourceExhaustedError('big'), status.RESOURCE_EXHAUSTED],
    [new MultiAgentsError(ErrorCode.Unauthenticated, 'who'), status.UNAUTHENTICATED],
    [new MultiAgentsError(ErrorCode.PermissionDenied, 'no'), status.PERMISSION_DENIED],
    [new MultiAgentsError(ErrorCode.Conflict, 'busy'), status.ABORTED],
  ])('maps %p by its code', (error, code) => {
    const mapped = toGrpcStatus(error);
    expect(mapped.unexpected).toBe(false);
    expect(mapped.status.code).toBe(code);
    expect(mapped.status.details).toBe(error.message);
    expect(mapped.status.metadata?.get(ERROR_CODE_METADATA_KEY)).toEqual([error.code]);
  });

  it('lists every validation problem in the message and in the details trailer', () => {
    const mapped = toGrpcStatus(new ValidationError('invalid request', ['é is odd', 'second']));
    expect(mapped.status.details).toBe('invalid request: é is odd; second');
    const [details] = mapped.status.metadata?.get(ERROR_DETAILS_METADATA_KEY) ?? [];
    expect(JSON.parse((details as Buffer).toString('utf8'))).toEqual({ problems: ['é is odd', 'second'] });
  });

  it('maps by code, not class: an error from another copy of contracts still maps', () => {
    const foreign = Object.assign(new Error('run x not found'), { code: 'NOT_FOUND' });
    expect(toGrpcStatus(foreign).status.code).toBe(status.NOT_FOUND);
  });

  it('turns a bug (illegal transition) into INTERNAL, flagged for the log', () => {
    const mapped = toGrpcStatus(new IllegalTransitionError('completed', 'running', 't-1'));
    expect(mapped).toMatchObject({ unexpected: true, status: { code: status.INTERNAL } });
    expect(mapped.status.details).toMatch(/^ILLEGAL_TRANSITION: /);
  });

  it('hides what a driver said in an INTERNAL error (key names, the ACL user), and its details', () => {
    const wrapped = new MultiAgentsError(
      ErrorCode.Internal,
      "get: Redis failed: NOPERM this user has no permissions to access the 'mp:{p0}:run:t-1' key",
      { retryable: false, details: { user: 'orchestrator' } },
    );
    const mapped = toGrpcStatus(wrapped);
    expect(mapped).toMatchObject({
      unexpected: true,
      status: { code: status.INTERNAL, details: 'internal error (see the server log)' },
    });
    expect(mapped.status.metadata?.get(ERROR_CODE_METADATA_KEY)).toEqual([ErrorCode.Internal]);
    expect(mapped.status.metadata?.get(ERROR_DETAILS_METADATA_KEY)).toEqual([]);
  });

  it.each([new Error('ECONNRESET at socket.js:12'), 'a string', undefined, { code: 42 }])(
    'hides what %p says behind INTERNAL',
    (thrown) => {
      const mapped = toGrpcStatus(thrown);
      expect(mapped).toMatchObject({
        unexpected: true,
        status: { code: status.INTERNAL, details: 'internal error (see the server log)' },
      });
    },
  );
});
