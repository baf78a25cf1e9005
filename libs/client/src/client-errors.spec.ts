import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
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
import { fromServiceError, RpcError, unavailableReason } from './client-errors';

function serviceError(
  code: status,
  details: string,
  trailers: Record<string, string | Buffer> = {},
): ServiceError {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(trailers)) metadata.set(key, value);
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

const detailsTrailer = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

describe('fromServiceError', () => {
  it('rebuilds a ValidationError with every problem from the trailers', () => {
    const err = fromServiceError(
      serviceError(status.INVALID_ARGUMENT, 'invalid request: a; b', {
        'multiagents-error-code': 'INVALID_ARGUMENT',
        'multiagents-error-details-bin': detailsTrailer({ problems: ['a', 'b'] }),
      }),
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).problems).toEqual(['a', 'b']);
    expect((err as ValidationError).message).toBe('invalid request: a; b');
    expect((err as Error).cause).toBeInstanceOf(Error);
  });

  it('tells a missing run from a missing workflow by the details', () => {
    const run = fromServiceError(
      serviceError(status.NOT_FOUND, 'run t-1 not found', {
        'multiagents-error-details-bin': detailsTrailer({ txId: 't-1' }),
      }),
    );
    expect(run).toBeInstanceOf(RunNotFoundError);
    expect((run as RunNotFoundError).txId).toBe('t-1');
    const workflow = fromServiceError(
      serviceError(status.NOT_FOUND, 'workflow w version 2 not found', {
        'multiagents-error-details-bin': detailsTrailer({ workflowId: 'w', version: 2 }),
      }),
    );
    expect(workflow).toBeInstanceOf(DefinitionNotFoundError);
    expect((workflow as DefinitionNotFoundError).version).toBe(2);
    const bare = fromServiceError(serviceError(status.NOT_FOUND, 'gone'));
    expect((bare as MultiAgentsError).code).toBe(ErrorCode.NotFound);
  });

  it.each([
    [status.ALREADY_EXISTS, AlreadyExistsError],
    [status.FAILED_PRECONDITION, FailedPreconditionError],
    [status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  ])('maps status %p to its domain class, without trailers too (a proxy answered)', (code, type) => {
    const err = fromServiceError(serviceError(code, 'server says so'));
    expect(err).toBeInstanceOf(type);
    expect((err as Error).message).toBe('server says so');
  });

  it('gives transport failures an RpcError with the gRPC code, retryable only when it is', () => {
    const unavailable = fromServiceError(serviceError(status.UNAVAILABLE, 'No connection established'));
    expect(unavailable).toBeInstanceOf(RpcError);
    expect(unavailable).toMatchObject({ code: 'UNAVAILABLE', grpcCode: status.UNAVAILABLE, retryable: true });
    expect(fromServiceError(serviceError(status.UNIMPLEMENTED, 'nope'))).toMatchObject({
      code: 'UNIMPLEMENTED',
      retryable: false,
    });
    expect(fromServiceError(serviceError(status.DEADLINE_EXCEEDED, 'late'))).toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    // The server's own code wins over the status mapping.
    expect(
      fromServiceError(
        serviceError(status.INTERNAL, 'x', { 'multiagents-error-code': 'ILLEGAL_TRANSITION' }),
      ),
    ).toMatchObject({ code: 'ILLEGAL_TRANSITION', grpcCode: status.INTERNAL });
  });

  it('names the address an unreachable server was called at, never ending in a bare "Resolution note:"', () => {
    const refused = fromServiceError(
      serviceError(
        status.UNAVAILABLE,
        'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ',
      ),
      { address: '127.0.0.1:1' },
    );
    expect(refused).toMatchObject({
      code: 'UNAVAILABLE',
      message: 'server at 127.0.0.1:1 unavailable: connect ECONNREFUSED 127.0.0.1:1',
      details: { address: '127.0.0.1:1' },
    });
    expect(unavailableReason('Name resolution failed for target dns:nowhere.invalid:50051')).toBe(
      'Name resolution failed for target dns:nowhere.invalid:50051',
    );
    // A note with something in it is kept.
    expect(unavailableReason('No connection established. Last error: x. Resolution note: DNS says no')).toBe(
      'x (DNS says no)',
    );
    // An UNAVAILABLE the server itself sent (its own code in the trailers) keeps the server's words.
    expect(
      fromServiceError(
        serviceError(status.UNAVAILABLE, 'shutting down', { 'multiagents-error-code': 'UNAVAILABLE' }),
        { address: 'h:1' },
      ),
    ).toMatchObject({ message: 'shutting down' });
  });

  it('passes anything that is not a gRPC error through', () => {
    const plain = new Error('local');
    expect(fromServiceError(plain)).toBe(plain);
  });
});
