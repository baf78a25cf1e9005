import { freePort } from '@multiagents/testing';
import { createRedisBackend } from './redis-backend';
import { freshPrefix, useRedisServer } from './test/redis-test-server';

describe('RedisMemoStore', () => {
  const redis = useRedisServer();

  it('keeps a record under the prefix, in a partition hash tag, as long as finished runs at least', async () => {
    const prefix = freshPrefix();
    const backend = redis.backend({ prefix, partitions: 4, terminalRunTtlMs: 3_600_000 });
    await backend.memo.put('tx-1:answer', { answer: 'Paris' });
    const key = backend.connection.keys.memo('tx-1:answer');
    expect(key).toMatch(new RegExp(`^${prefix}:\\{p[0-3]\\}:memo:tx-1:answer$`));
    const ttl = await backend.connection.client.pttl(key);
    // Set to the run retention; a few ms may have passed since.
    expect(ttl).toBeGreaterThan(3_600_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    // A record that is put again keeps its first TTL and value.
    await backend.memo.put('tx-1:answer', { answer: 'Rome' });
    expect(await backend.connection.client.get(key)).toBe('{"answer":"Paris"}');
  });

  it('keeps records forever when finished runs are kept forever', async () => {
    const backend = redis.backend({ terminalRunTtlMs: 0 });
    await backend.memo.put('tx-1:answer', { answer: 'Paris' });
    expect(await backend.connection.client.pttl(backend.connection.keys.memo('tx-1:answer'))).toBe(-1);
  });

  it('rejects with TIMEOUT, never undefined, when Redis does not answer', async () => {
    const backend = createRedisBackend({
      url: `redis://127.0.0.1:${await freePort()}`,
      prefix: freshPrefix(),
      commandTimeoutMs: 200,
      maxRetriesPerRequest: 0,
    });
    try {
      await expect(backend.memo.get('tx-1:answer')).rejects.toMatchObject({
        code: 'TIMEOUT',
        retryable: true,
      });
      await expect(backend.memo.put('tx-1:answer', { a: 1 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    } finally {
      await backend.close();
    }
  });
});
