import type { WorkerManagerRecord } from '@multiagents/core';
import { useRedisServer } from './test/redis-test-server';

function record(managerId: string, seenAt = Date.now()): WorkerManagerRecord {
  return { managerId, workers: ['inventory.reserve'], capacity: 4, inFlight: 1, seenAt };
}

describe('RedisWorkerRegistry', () => {
  const redis = useRedisServer();

  it('drops the fields it did not write (forged or damaged) and lists the live replicas', async () => {
    const backend = redis.backend();
    const { keys, client } = backend.connection;
    await backend.registry.announce(record('wm-a'), 60_000);
    await backend.registry.announce(record('wm-b'), 60_000);
    const expiresAt = Date.now() + 60_000;
    const forged: Record<string, string> = {
      'wm-null': 'null',
      'wm-no-record': JSON.stringify({ expiresAt }),
      'wm-bad-record': JSON.stringify({ expiresAt, record: { managerId: 'wm-bad-record', workers: 'all' } }),
      'wm-other': JSON.stringify({ expiresAt, record: record('wm-a') }),
      'wm-not-json': '{',
    };
    await client.hset(keys.workerRegistry(), forged);

    expect((await backend.registry.list()).map((r) => r.managerId)).toEqual(['wm-a', 'wm-b']);
    expect(backend.bus.counters()['refusedRecords']).toBe(5);
    // Dropped from the hash, as expired records are: the next list() finds nothing to refuse.
    expect((await client.hkeys(keys.workerRegistry())).sort()).toEqual(['wm-a', 'wm-b']);
    expect((await backend.registry.list()).map((r) => r.managerId)).toEqual(['wm-a', 'wm-b']);
    expect(backend.bus.counters()['refusedRecords']).toBe(5);
  });

  it('forgets a replica once its time to live has run out', async () => {
    const backend = redis.backend();
    await backend.registry.announce(record('wm-gone', Date.now() - 120_000), 60_000);
    await backend.registry.announce(record('wm-live'), 60_000);
    expect((await backend.registry.list()).map((r) => r.managerId)).toEqual(['wm-live']);
    expect(await backend.connection.client.hkeys(backend.connection.keys.workerRegistry())).toEqual([
      'wm-live',
    ]);
  });
});
