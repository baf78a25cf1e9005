/**
 * What a service's /readyz adds to its own readiness: whether its broker can be reached now.
 * Real servers, killed and restarted on their port.
 */
import { startNatsServer, startRedisServer, waitFor, type ServerProcess } from '@multiagents/testing';
import { openBackend, type Backend } from './open-backend';
import { parseServiceConfig } from './service-config';

async function followsItsBroker(server: ServerProcess, backend: Backend): Promise<void> {
  // Up: a first call proves it.
  await backend.registry.list();
  await waitFor(() => backend.connected(), { timeoutMs: 10_000, description: 'connected' });
  server.kill('SIGKILL');
  await server.exited();
  await waitFor(() => !backend.connected(), { timeoutMs: 10_000, description: 'seen as away' });
  await server.restart();
  await waitFor(() => backend.connected(), { timeoutMs: 20_000, description: 'connected again' });
  await backend.registry.list();
}

describe('Backend.connected (readiness)', () => {
  it('follows a Redis server that goes away and comes back', async () => {
    const redis = await startRedisServer();
    const backend = await openBackend(
      parseServiceConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: redis.url }, { grpcPort: 0 }),
    );
    try {
      await followsItsBroker(redis, backend);
    } finally {
      await backend.close();
      await redis.stop();
    }
  }, 60_000);

  it('follows a NATS server that goes away and comes back', async () => {
    const nats = await startNatsServer();
    const backend = await openBackend(
      parseServiceConfig({ MULTIAGENTS_BACKEND: 'nats', NATS_URL: nats.url }, { grpcPort: 0 }),
    );
    try {
      await followsItsBroker(nats, backend);
    } finally {
      await backend.close();
      await nats.stop();
    }
  }, 60_000);

  it('is always connected in one process (memory)', async () => {
    const backend = await openBackend(parseServiceConfig({ MULTIAGENTS_BACKEND: 'memory' }, { grpcPort: 0 }));
    try {
      expect(backend.connected()).toBe(true);
    } finally {
      await backend.close();
    }
  });
});
