import {
  definitionStoreConformance,
  eventBusConformance,
  memoStoreConformance,
  runStoreConformance,
  timelineStoreConformance,
  workerRegistryConformance,
} from '@multiagents/testing';
import { freshPrefix, useRedisServer } from './test/redis-test-server';

// The shared suites, as the memory backend runs them, with one partition and with three.
describe.each([1, 3])('Redis backend, %i partition(s)', (partitions) => {
  const redis = useRedisServer();

  eventBusConformance(`redis P=${partitions}`, async () => {
    const backend = redis.backend({ partitions });
    return {
      bus: backend.bus,
      publishRaw: (topic, bytes) => backend.bus.publishRaw(topic, bytes),
      cleanup: () => backend.close(),
    };
  });

  runStoreConformance(`redis P=${partitions}`, async () => {
    const backend = redis.backend({ partitions });
    return { runs: backend.runs, bus: backend.bus, atomicAck: true, cleanup: () => backend.close() };
  });

  definitionStoreConformance(`redis P=${partitions}`, async () => {
    const backend = redis.backend({ partitions });
    return { store: backend.definitions, cleanup: () => backend.close() };
  });

  workerRegistryConformance(`redis P=${partitions}`, async () => {
    const backend = redis.backend({ partitions });
    return { registry: backend.registry, cleanup: () => backend.close() };
  });

  timelineStoreConformance(`redis P=${partitions}`, async () => {
    const prefix = freshPrefix();
    const backend = redis.backend({ partitions, prefix });
    const replica = redis.backend({ partitions, prefix });
    return {
      store: backend.timelines,
      replica: replica.timelines,
      cleanup: async () => {
        await backend.close();
        await replica.close();
      },
    };
  });
});

describe.each([1, 3])('Redis memo, %i partition(s)', (partitions) => {
  const redis = useRedisServer();

  memoStoreConformance(`redis P=${partitions}`, async () => {
    const prefix = freshPrefix();
    const backend = redis.backend({ partitions, prefix });
    const replica = redis.backend({ partitions, prefix });
    return {
      store: backend.memo,
      replica: replica.memo,
      writeRaw: async (key, text) => {
        await backend.connection.client.set(backend.connection.keys.memo(key), text);
      },
      breakStore: () => backend.close(),
      cleanup: () => replica.close(),
    };
  });
});
