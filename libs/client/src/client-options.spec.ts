import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_CLIENT_OPTIONS, resolveClientOptions } from './client-options';

describe('client options', () => {
  it('applies the defaults', () => {
    expect(resolveClientOptions('127.0.0.1:50051', {})).toMatchObject({
      timeoutMs: DEFAULT_CLIENT_OPTIONS.timeoutMs,
      retry: DEFAULT_CLIENT_OPTIONS.retry,
      maxReceiveMessageBytes: DEFAULT_CLIENT_OPTIONS.maxReceiveMessageBytes,
    });
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      resolveClientOptions('', { timeoutMs: 0, retry: { maxAttempts: 1.5, initialBackoffMs: -1 } });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      'address must be a non-empty string such as "127.0.0.1:50051"',
      'timeoutMs must be a positive integer (got 0)',
      'retry.maxAttempts must be a positive integer (got 1.5)',
      'retry.initialBackoffMs must be a positive integer (got -1)',
    ]);
  });
});
