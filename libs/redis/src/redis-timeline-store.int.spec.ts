import { RunState } from '@multiagents/contracts';
import type { TimelineEntry } from '@multiagents/core';
import {
  startRedisClusterProcesses,
  timelineStoreConformance,
  type RedisClusterProcesses,
} from '@multiagents/testing';
import { Cluster } from 'ioredis';
import { createRedisBackend, type RedisBackend } from './redis-backend';
import { freshPrefix, useRedisServer } from './test/redis-test-server';

function entry(version: number, state: RunState = RunState.Running): TimelineEntry {
  return { version, state, time: 1_700_000_000_000 + version, events: [] };
}

/** EVALSHA calls Redis executed so far (INFO commandstats). */
async function evalshaCalls(info: string): Promise<number> {
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describe('RedisTimelineStore', () => {
  const redis = useRedisServer();

  it("writes one turn's appends as one script call per partition, every entry kept", async () => {
    // No background scripts (stream trims, index prunes) that the EVALSHA count could catch.
    const backend = redis.backend({
      prefix: freshPrefix(),
      partitions: 2,
      trimIntervalMs: 0,
      indexPruneIntervalMs: 0,
    });
    const { client } = backend.connection;
    const txIds = Array.from({ length: 40 }, (_, i) => `tx-${i}`);
    // Warm up: the script is loaded, so every later call is one EVALSHA.
    await backend.timelines.append('tx-warm', [entry(1)], 60_000);
    const before = await evalshaCalls(await client.info('commandstats'));
    await Promise.all(txIds.map((txId) => backend.timelines.append(txId, [entry(1), entry(2)], 60_000)));
    const after = await evalshaCalls(await client.info('commandstats'));
    const partitions = new Set(txIds.map((txId) => backend.connection.keys.partitionOf(txId)));
    expect(partitions.size).toBe(2);
    expect(after - before).toBe(partitions.size);
    for (const txId of txIds) {
      expect((await backend.timelines.get(txId))?.map((e) => e.version)).toEqual([1, 2]);
      const ttl = await client.pttl(backend.connection.keys.timeline(txId));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  it("merges one turn's appends to one run: one PEXPIRE per run, the longest time to live", async () => {
    const backend = redis.backend({ prefix: freshPrefix(), trimIntervalMs: 0, indexPruneIntervalMs: 0 });
    const { client, keys } = backend.connection;
    const calls = async (command: string): Promise<number> =>
      Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await client.info('commandstats'))?.[1] ?? 0);
    await backend.timelines.append('tx-warm', [entry(1)], 60_000);
    const [pexpire, hsetnx] = [await calls('pexpire'), await calls('hsetnx')];
    await Promise.all(
      ['tx-a', 'tx-b', 'tx-c'].flatMap((txId) => [
        backend.timelines.append(txId, [entry(1)], 60_000),
        backend.timelines.append(txId, [entry(2), entry(3)], 600_000),
      ]),
    );
    expect((await calls('pexpire')) - pexpire).toBe(3);
    expect((await calls('hsetnx')) - hsetnx).toBe(9);
    for (const txId of ['tx-a', 'tx-b', 'tx-c']) {
      expect((await backend.timelines.get(txId))?.map((e) => e.version)).toEqual([1, 2, 3]);
      expect(await client.pttl(keys.timeline(txId))).toBeGreaterThan(60_000);
    }
  });

  it('keeps the first copy of a version appended twice in one turn', async () => {
    const backend = redis.backend({ prefix: freshPrefix() });
    await Promise.all([
      backend.timelines.append('tx-1', [entry(1, RunState.Running)], 60_000),
      backend.timelines.append('tx-1', [entry(1, RunState.Completed), entry(2, RunState.Completed)], 60_000),
    ]);
    expect((await backend.timelines.get('tx-1'))?.map((e) => e.state)).toEqual(['running', 'completed']);
  });

  it('refuses malformed arguments before writing anything', async () => {
    const backend = redis.backend({ prefix: freshPrefix() });
    const { keys, scripts, client } = backend.connection;
    const key = keys.timeline('tx-1');
    // The second key's count promises more pairs than there are.
    await expect(
      scripts.appendTimeline([key, keys.timeline('tx-2')], [60_000, 1, 1, '{}', 60_000, 3, 1, '{}']),
    ).rejects.toThrow(/append-timeline: bad arguments/);
    // A bad time to live on a later key: the first key's entry is not written either.
    for (const ttl of [0, 'nan', 'inf', '-inf', 1.5, '1e300']) {
      await expect(
        scripts.appendTimeline([key, keys.timeline('tx-2')], [60_000, 1, 1, '{}', ttl, 1, 1, '{}']),
      ).rejects.toThrow(/bad arguments/);
    }
    await expect(scripts.appendTimeline([key], [60_000, 1, 1, '{}', 'extra'])).rejects.toThrow(
      /bad arguments/,
    );
    expect(await client.exists(key, keys.timeline('tx-2'))).toBe(0);
    await expect(backend.timelines.append('tx-1', [entry(1)], Number.NaN)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(await client.exists(key)).toBe(0);
  });

  it('leaves out the fields it did not write (forged or damaged) and reads the others', async () => {
    const backend = redis.backend({ prefix: freshPrefix() });
    const { keys, client } = backend.connection;
    await backend.timelines.append('tx-1', [entry(1), entry(3)], 60_000);
    const forged: Record<string, string> = {
      '2': 'null',
      '4': '{"version":4}',
      '5': 'not json',
      '6': JSON.stringify({ ...entry(7) }),
      '8': JSON.stringify({ ...entry(8), events: [null] }),
    };
    await client.hset(keys.timeline('tx-1'), forged);
    expect((await backend.timelines.get('tx-1'))?.map((e) => e.version)).toEqual([1, 3]);
    expect(backend.bus.counters()['refusedRecords']).toBe(5);
  });

  it('restarts the time to live of a timeline when nothing new is appended', async () => {
    const backend = redis.backend({ prefix: freshPrefix() });
    const key = backend.connection.keys.timeline('tx-1');
    await backend.timelines.append('tx-1', [entry(1)], 1_000);
    await backend.timelines.append('tx-1', [], 600_000);
    expect(await backend.connection.client.pttl(key)).toBeGreaterThan(1_000);
  });
});

describe('RedisTimelineStore marks', () => {
  const redis = useRedisServer();

  it('takes a mark for its lease under a token, and extends it only while that token holds it', async () => {
    const backend = redis.backend({ prefix: freshPrefix() });
    const { client, keys } = backend.connection;
    const name = keys.monitorMark('stuck:tx-1:5');
    const token = await backend.timelines.markOnce('stuck:tx-1:5', 30_000);
    expect(await client.get(name)).toBe(token);
    expect(await client.pttl(name)).toBeGreaterThan(20_000);
    expect(await client.pttl(name)).toBeLessThanOrEqual(30_000);
    expect(await backend.timelines.extendMark('stuck:tx-1:5', token as string, 86_400_000)).toBe(true);
    expect(await client.pttl(name)).toBeGreaterThan(30_000);
    // Another replica took the mark after the lease ran out (set here by hand): not extended.
    await client.set(name, 'another-token', 'PX', 5_000);
    expect(await backend.timelines.extendMark('stuck:tx-1:5', token as string, 86_400_000)).toBe(false);
    expect(await client.get(name)).toBe('another-token');
    expect(await client.pttl(name)).toBeLessThanOrEqual(5_000);
  });
});

describe('RedisTimelineStore on a Redis Cluster', () => {
  // Every call stays in one slot (a CROSSSLOT error would fail it): a timeline's script in its
  // run's partition, a mark and its extension on the mark's one key.
  let cluster: RedisClusterProcesses | undefined;

  beforeAll(async () => {
    cluster = await startRedisClusterProcesses({ masters: 3, replicasPerMaster: 0 });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  function backend(prefix: string): RedisBackend {
    const nodes = (cluster?.nodes ?? []).map((node) => ({ host: '127.0.0.1', port: node.port }));
    return createRedisBackend({
      // Commands only: nothing here subscribes, so no blocking reader needs other settings.
      connect: () =>
        new Cluster([...nodes], { redisOptions: { commandTimeout: 5_000, disconnectTimeout: 300 } }),
      prefix,
      partitions: 3,
      trimIntervalMs: 0,
      indexPruneIntervalMs: 0,
    });
  }

  timelineStoreConformance('redis cluster, P=3', async () => {
    const prefix = freshPrefix();
    const store = backend(prefix);
    const replica = backend(prefix);
    expect(store.connection.cluster).toBe(true);
    return {
      store: store.timelines,
      replica: replica.timelines,
      cleanup: async () => {
        await store.close();
        await replica.close();
      },
    };
  });
});
