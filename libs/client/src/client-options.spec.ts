import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_CLIENT_OPTIONS, resolveClientOptions, type ClientOptions } from './client-options';

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

  it('builds TLS credentials and a token source, and checks them', () => {
    const resolved = resolveClientOptions('127.0.0.1:1', { tls: {}, token: 'abc.def.ghi' });
    expect(resolved.credentials?._isSecure()).toBe(true);
    expect(resolved.token?.()).toBe('abc.def.ghi');
    let error: unknown;
    try {
      resolveClientOptions('127.0.0.1:1', { tls: { cert: 'x' }, token: 'has space' });
    } catch (err) {
      error = err;
    }
    expect((error as ValidationError).problems).toEqual([
      'tls.cert and tls.key go together (mutual TLS needs both)',
      'token must be non-empty printable ASCII without spaces',
    ]);
  });

  it('refuses to send a token in clear beyond this machine, unless told TLS is added on the way', () => {
    const problems = (address: string, extra: Partial<ClientOptions> = {}): readonly string[] => {
      try {
        resolveClientOptions(address, { token: 'abc.def.ghi', ...extra });
        return [];
      } catch (err) {
        return (err as ValidationError).problems;
      }
    };
    for (const local of [
      '127.0.0.1:50051',
      'localhost:50051',
      '[::1]:50051',
      'dns:///localhost:1',
      'unix:/tmp/s',
    ]) {
      expect({ local, problems: problems(local) }).toEqual({ local, problems: [] });
    }
    expect(problems('orchestrator.prod:50051')).toEqual([
      "a bearer token would go to orchestrator.prod:50051 unencrypted: use tls (the CLI's --tls), or allowTokenWithoutTls when TLS is added on the way",
    ]);
    expect(problems('10.1.2.3:50051', { tls: {} })).toEqual([]);
    expect(problems('10.1.2.3:50051', { allowTokenWithoutTls: true })).toEqual([]);
  });

  it('bounds every number to what the runtime honours', () => {
    let error: unknown;
    try {
      resolveClientOptions('127.0.0.1:1', { timeoutMs: 2 ** 31, retry: { maxAttempts: 1_000 } });
    } catch (err) {
      error = err;
    }
    expect((error as ValidationError).problems).toEqual([
      'timeoutMs must be at most 2147483647 (got 2147483648)',
      'retry.maxAttempts must be at most 100 (got 1000)',
    ]);
  });
});
