import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_REDIS_BACKEND_OPTIONS, resolveRedisBackendOptions } from './redis-backend-options';

describe('resolveRedisBackendOptions', () => {
  it('applies the defaults', () => {
    const resolved = resolveRedisBackendOptions({ url: 'redis://127.0.0.1:1' });
    expect(resolved).toMatchObject({ ...DEFAULT_REDIS_BACKEND_OPTIONS, url: 'redis://127.0.0.1:1' });
    expect(resolved.terminalRunTtlMs).toBe(7 * 24 * 60 * 60 * 1000);
    expect(resolved.partitions).toBe(1);
  });

  it('reports every problem at once', () => {
    let error: unknown;
    try {
      resolveRedisBackendOptions({
        url: 'http://x',
        prefix: 'a}b',
        partitions: 0,
        terminalRunTtlMs: -1,
        eventsMaxLen: 0,
        blockMs: 0,
        redis: { keyPrefix: 'x:' },
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      'url must be a redis:// or rediss:// URL',
      'redis.keyPrefix is not supported: use prefix (keys carry Redis Cluster hash tags)',
      'prefix must not contain { or } (they would break the hash tags)',
      'partitions must be an integer >= 1',
      'terminalRunTtlMs must be an integer >= 0',
      'eventsMaxLen must be an integer >= 1',
      'blockMs must be an integer >= 1',
    ]);
  });

  it('keeps memo records at least as long as finished runs', () => {
    const url = 'redis://127.0.0.1:1';
    expect(resolveRedisBackendOptions({ url, terminalRunTtlMs: 60_000 }).memoTtlMs).toBe(60_000);
    expect(resolveRedisBackendOptions({ url, terminalRunTtlMs: 0 }).memoTtlMs).toBe(0);
    expect(resolveRedisBackendOptions({ url, terminalRunTtlMs: 60_000, memoTtlMs: 0 }).memoTtlMs).toBe(0);
    expect(() => resolveRedisBackendOptions({ url, terminalRunTtlMs: 60_000, memoTtlMs: 1_000 })).toThrow(
      /memoTtlMs \(1000\) must not be shorter than terminalRunTtlMs/,
    );
    expect(() => resolveRedisBackendOptions({ url, terminalRunTtlMs: 0, memoTtlMs: 1_000 })).toThrow(
      /must not be shorter/,
    );
    expect(() => resolveRedisBackendOptions({ url, memoTtlMs: -5 })).toThrow(
      /memoTtlMs must be an integer >= 0/,
    );
  });

  it('needs exactly one of url and connect', () => {
    expect(() => resolveRedisBackendOptions({})).toThrow(/url or connect is required/);
    expect(() => resolveRedisBackendOptions({ url: 'redis://h:1', connect: () => ({}) as never })).toThrow(
      /not both/,
    );
  });
});
