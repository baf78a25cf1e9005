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

/** How each broker is started, and the variables that point a service at it. */
const brokers: [string, () => Promise<ServerProcess>, (url: string) => Record<string, string>][] = [
  ['Redis', () => startRedisServer(), (url) => ({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: url })],
  ['NATS', () => startNatsServer(), (url) => ({ MULTIAGENTS_BACKEND: 'nats', NATS_URL: url })],
];

describe('Backend.connected (readiness)', () => {
  it.each(brokers)(
    'follows a %s server that goes away and comes back',
    async (_name, start, env) => {
      const server = await start();
      const backend = await openBackend(parseServiceConfig(env(server.url), { grpcPort: 0 }));
      try {
        await followsItsBroker(server, backend);
      } finally {
        await backend.close();
        await server.stop();
      }
    },
    60_000,
  );

  it('is always connected in one process (memory)', async () => {
    const backend = await openBackend(parseServiceConfig({ MULTIAGENTS_BACKEND: 'memory' }, { grpcPort: 0 }));
    try {
      expect(backend.connected()).toBe(true);
    } finally {
      await backend.close();
    }
  });
});
