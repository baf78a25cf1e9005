import {
  definitionStoreConformance,
  eventBusConformance,
  memoStoreConformance,
  runStoreConformance,
  timelineStoreConformance,
  workerRegistryConformance,
} from '@multiagents/testing';
import { TEST_REQUEST_TIMEOUT_MS, useNatsTestServer } from './testing/nats-test-backend';

// Slowness on a loaded machine is not a failure: each test may take a few slow requests.
jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

// One private nats-server for the file; every test gets a fresh prefix (its own streams and
// buckets), deleted afterwards.
const nats = useNatsTestServer();

eventBusConformance(
  'nats',
  async () => {
    const backend = await nats().backend();
    return {
      bus: backend.bus,
      publishRaw: (topic, bytes) => backend.bus.publishRaw(topic, bytes),
      cleanup: async () => {
        await backend.close();
        await nats().destroy(backend.names.prefix);
      },
    };
  },
  // The dead-letter stream keeps no count of what it ever held.
  { noDeadLettersAdded: true },
);

runStoreConformance('nats', async () => {
  const backend = await nats().backend();
  return {
    runs: backend.runs,
    bus: backend.bus,
    // The store cannot acknowledge a bus delivery inside its KV write: the bus acks after the handler.
    atomicAck: false,
    cleanup: async () => {
      await backend.close();
      await nats().destroy(backend.names.prefix);
    },
  };
});

definitionStoreConformance('nats', async () => {
  const backend = await nats().backend();
  return {
    store: backend.definitions,
    cleanup: async () => {
      await backend.close();
      await nats().destroy(backend.names.prefix);
    },
  };
});

workerRegistryConformance('nats', async () => {
  const backend = await nats().backend();
  return {
    registry: backend.registry,
    cleanup: async () => {
      await backend.close();
      await nats().destroy(backend.names.prefix);
    },
  };
});

timelineStoreConformance('nats', async () => {
  const backend = await nats().backend();
  // A second process on the same prefix: another monitor replica.
  const replica = await nats().backend({ prefix: backend.names.prefix });
  return {
    store: backend.timelines,
    replica: replica.timelines,
    cleanup: async () => {
      await replica.close();
      await backend.close();
      await nats().destroy(backend.names.prefix);
    },
  };
});

memoStoreConformance('nats', async () => {
  const backend = await nats().backend();
  // A second process on the same prefix: another worker-manager replica.
  const replica = await nats().backend({ prefix: backend.names.prefix });
  return {
    store: backend.memo,
    replica: replica.memo,
    writeRaw: async (key, text) => {
      // The bucket as the store makes it on first use, then a value behind its back.
      await backend.memo.get(key);
      const kv = await nats().kv(backend.names.memoBucket);
      await kv.put(backend.names.memoRecord(key), text);
    },
    breakStore: () => backend.close(),
    cleanup: async () => {
      await replica.close();
      await backend.close();
      await nats().destroy(backend.names.prefix);
    },
  };
});
