import { ErrorCode } from '@multiagents/contracts';
import { RedisDefinitionStore } from './redis-definition-store';
import { RedisStateStore } from './redis-state-store';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_REDIS_URL,
  resolveRedisStoreOptions,
} from './redis-store-options';

// Invalid options throw before any connection is opened: no server needed.
describe('Redis store options', () => {
  it('fills in defaults', () => {
    const resolved = resolveRedisStoreOptions('x', {});
    expect(resolved).toMatchObject({
      url: DEFAULT_REDIS_URL,
      prefix: 'multiagents',
      commandTimeoutMs: DEFAULT_COMMAND_TIMEOUT_MS,
    });
    expect(resolveRedisStoreOptions('x', { redis: { port: 7000 } }).url).toBeUndefined();
  });

  it('lists every problem of a RedisStateStore at once', () => {
    expect(
      () =>
        new RedisStateStore({
          url: 'http://nope',
          prefix: 'a{b}',
          terminalRunTtlMs: -1,
          commandTimeoutMs: 0,
          idempotencyWaitMs: Number.NaN,
          inFlightGraceMs: -5,
        }),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCode.InvalidArgument,
        problems: [
          'prefix must not contain { or } (they would break the hash tags)',
          'terminalRunTtlMs must be an integer >= 0',
          'idempotencyWaitMs must be a number > 0',
          'inFlightGraceMs must be a number > 0',
          'url must start with redis:// or rediss://',
          'commandTimeoutMs must be a number > 0',
        ],
      }),
    );
  });

  it('refuses a shared client together with url or redis options', () => {
    const client = {} as never;
    expect(() => new RedisDefinitionStore({ client, url: 'redis://127.0.0.1:1' })).toThrow(
      expect.objectContaining({ problems: ['give either client or url/redis, not both'] }),
    );
  });
});
