import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_REDIS_BUS_OPTIONS, resolveRedisEventBusOptions } from './redis-event-bus-options';

describe('resolveRedisEventBusOptions', () => {
  it('applies the defaults', () => {
    const resolved = resolveRedisEventBusOptions({ url: 'redis://127.0.0.1:1' });
    expect(resolved).toMatchObject({ ...DEFAULT_REDIS_BUS_OPTIONS, url: 'redis://127.0.0.1:1' });
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      resolveRedisEventBusOptions({
        client: { keyPrefix: 'x:' },
        prefix: 'a}',
        blockMs: 0,
        batchSize: 1.5,
        trimIntervalMs: -1,
        maxDeadLettersPerTopic: 0,
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining('keyPrefix'),
        expect.stringContaining('prefix must not contain'),
        'blockMs must be an integer >= 1',
        'batchSize must be an integer >= 1',
        'trimIntervalMs must be an integer >= 0',
        'maxDeadLettersPerTopic must be an integer >= 1',
      ]),
    );
    expect(problems).toHaveLength(6);
  });

  it('requires a url or client options', () => {
    expect(() => resolveRedisEventBusOptions({})).toThrow('url or client is required');
    expect(() => resolveRedisEventBusOptions({ url: 'http://x' })).toThrow('redis:// or rediss://');
  });
});
