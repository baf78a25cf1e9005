import {
  definitionStoreConformance,
  eventBusConformance,
  memoStoreConformance,
  runStoreConformance,
  startRedisClusterProcesses,
  type RedisClusterProcesses,
} from '@multiagents/testing';
import { Cluster } from 'ioredis';
import { createRedisBackend, type RedisBackend } from './redis-backend';
import type { RedisClientRole } from './redis-backend-options';
import { freshPrefix } from './test/redis-test-server';

// The same suites on a private three-master Redis Cluster with three partitions: every script
// and pipeline stays in one slot (a CROSSSLOT error would fail them), and subscribers read each
// partition on its own reader.
let cluster: RedisClusterProcesses | undefined;

beforeAll(async () => {
  cluster = await startRedisClusterProcesses({ masters: 3, replicasPerMaster: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

function backend(): RedisBackend {
  const nodes = (cluster?.nodes ?? []).map((node) => ({ host: '127.0.0.1', port: node.port }));
  const connect = (role: RedisClientRole): Cluster =>
    new Cluster([...nodes], {
      redisOptions:
        role === 'commands'
          ? { commandTimeout: 5_000, disconnectTimeout: 300 }
          : { maxRetriesPerRequest: null, disconnectTimeout: 300 },
    });
  // Short blocks: on a Cluster a closing subscription waits for its blocked reads (no CLIENT UNBLOCK).
  return createRedisBackend({
    connect,
    prefix: freshPrefix(),
    partitions: 3,
    claimIntervalMs: 100,
    blockMs: 200,
  });
}

eventBusConformance('redis cluster, P=3', async () => {
  const b = backend();
  expect(b.connection.cluster).toBe(true);
  return {
    bus: b.bus,
    publishRaw: (topic, bytes) => b.bus.publishRaw(topic, bytes),
    cleanup: () => b.close(),
  };
});

runStoreConformance('redis cluster, P=3', async () => {
  const b = backend();
  return { runs: b.runs, bus: b.bus, atomicAck: true, cleanup: () => b.close() };
});

definitionStoreConformance('redis cluster, P=3', async () => {
  const b = backend();
  return { store: b.definitions, cleanup: () => b.close() };
});

memoStoreConformance('redis cluster, P=3', async () => {
  const b = backend();
  return {
    store: b.memo,
    writeRaw: async (key, text) => {
      await b.connection.client.set(b.connection.keys.memo(key), text);
    },
    breakStore: () => b.close(),
    cleanup: () => b.close(),
  };
});
