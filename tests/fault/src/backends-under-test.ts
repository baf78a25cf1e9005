import { openBackend } from '@multiagents/backends';
import { startNatsServer, startRedisServer } from '@multiagents/testing';
import type { BackendUnderTest } from './fault-scenario';

/** Redis with the AOF fsynced on every write: a kill -9 of redis-server loses nothing acknowledged. */
export const redisUnderTest: BackendUnderTest = {
  name: 'redis',
  startServer: () => startRedisServer({ appendOnly: true, appendFsync: 'always' }),
  env: (server) => ({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: server.url }),
  open: (server, prefix) => openBackend({ backend: 'redis', redisUrl: server.url, prefix }),
};

/** NATS with JetStream, its store directory kept across kill -9 and restart. */
export const natsUnderTest: BackendUnderTest = {
  name: 'nats',
  startServer: () => startNatsServer(),
  env: (server) => ({ MULTIAGENTS_BACKEND: 'nats', NATS_URL: server.url }),
  open: (server, prefix) => openBackend({ backend: 'nats', natsUrl: server.url, prefix }),
};
