import { ErrorCode } from '@multiagents/contracts';
import { deferredApi } from './deferred-api';

interface Api {
  readonly id: string;
  get(id: string): Promise<string>;
  subscribe(listener: () => void): () => void;
}

describe('deferredApi', () => {
  it('fails every call with UNAVAILABLE, saying why, until an implementation is bound', () => {
    const deferred = deferredApi<Api>('waiting for the broker');
    expect(() => deferred.api.get('a')).toThrow(
      expect.objectContaining({
        code: ErrorCode.Unavailable,
        message: 'waiting for the broker',
        retryable: true,
      }),
    );
    expect(() => deferred.api.subscribe(() => undefined)).toThrow('waiting for the broker');
    expect(() => deferred.api.id).toThrow('waiting for the broker');
  });

  it('forwards calls, with their arguments and this, once bound', async () => {
    const deferred = deferredApi<Api>('waiting');
    const unsubscribe = jest.fn();
    const impl = {
      id: 'm-1',
      prefix: 'run-',
      async get(id: string) {
        return `${this.prefix}${id}`;
      },
      subscribe: jest.fn(() => unsubscribe),
    };
    deferred.bind(impl);
    await expect(deferred.api.get('7')).resolves.toBe('run-7');
    expect(deferred.api.subscribe(() => undefined)).toBe(unsubscribe);
    expect(deferred.api.id).toBe('m-1');
    // Awaiting it or logging it does not count as a call.
    await expect(Promise.resolve(deferredApi<Api>('x').api)).resolves.toBeDefined();
  });
});
